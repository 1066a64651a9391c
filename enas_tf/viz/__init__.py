"""Pictures of architectures: `draw` renders PNG drawings of cells and
macro networks, `layout` places a DAG's nodes in layers.
"""
