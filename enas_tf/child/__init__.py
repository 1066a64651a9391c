"""Fixed child networks: one Keras model per architecture.

`macro` and `micro` build the two CNN families from the op table; `build`
picks one for a config and makes the inference model.
"""
