"""Final training of a derived architecture from scratch.

`image`: CNN children (Keras `fit`, ENAS's schedules, checkpoints);
`lm`: recurrent-cell language models.
"""
