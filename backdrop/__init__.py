"""The `backdrop` command: the command line over the pipeline (core) and the history (storage).

It sits above both: it may import core and storage, and neither imports it.
"""
