"""Recurrent-cell language models (ENAS's PTB search space).

`cells`: the shared and fixed recurrent cells; `model`: the language
models around them; `steps`: their training and evaluation steps; `loop`:
the truncated-BPTT epoch loop shared by search and final training.
"""
