"""Architecture search over shared weights.

`loop`: the strategy-agnostic epochs, logs, checkpoints and resume;
`image`: the CNN search (macro and micro spaces); `lm`: the recurrent-cell
search.
"""
