"""Shared-weight supernets: every architecture of a space is a sub-graph.

`macro` and `micro` are the two CNN supernets (Keras models whose `call`
takes the architecture as an integer tensor); `slots` holds a micro cell's
per-slot switch; `build` picks a supernet for a config and recalibrates
batch statistics; `micro_child` takes an architecture's weights out for its
child; `transfer` copies a search's shared weights into a child network
(weight inheritance).
"""
