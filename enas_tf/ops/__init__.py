"""Candidate operations of the search spaces.

`table`: what each op name means (kind, kernel, pooling), the one place
the supernets, the child networks and the cost counts learn it from.
"""
