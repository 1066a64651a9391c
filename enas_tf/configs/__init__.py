"""Run settings as dataclasses, checked before anything slow runs.

`image`: CNN child, final-training and search settings; `lm`: the
language-model counterparts.
"""
