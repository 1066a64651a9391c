"""Final training of a derived architecture from scratch.

`image`: CNN children (Keras `fit` with ENAS's recipe); `schedules`: the
learning-rate and drop-path schedules; `callbacks`: exact-resume
checkpoints and the run's progress bar; `lm`: recurrent-cell language
models.
"""
