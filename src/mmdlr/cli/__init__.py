"""The `mmdlr` command line."""
