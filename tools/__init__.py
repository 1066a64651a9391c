"""Command-line tools: `python -m tools.<name>` from a clone, or `enas-<name>`."""
