"""Shared-weight supernets: every architecture of a space is a sub-graph.

`macro` and `micro` are the two CNN supernets (Keras models whose `call`
takes the architecture as an integer tensor); `build` picks one for a
config and recalibrates batch statistics; `transfer` copies a search's
shared weights into a child network (weight inheritance).
"""
