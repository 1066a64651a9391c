"""Export of trained networks: SavedModel and TFLite.

`image`: CNN models; `lm`: language models; `run`: exporting a run
directory (staged, never overwriting a good export with a broken one).
"""
