"""Architecture search over shared weights.

`loop`: the strategy-agnostic epochs, logs, checkpoints and resume;
`steps`: the shared-weight train, evaluation and calibration steps;
`derive`: the derive step's outputs; `image`: the CNN search (macro and
micro spaces); `lm`: the recurrent-cell search.
"""
