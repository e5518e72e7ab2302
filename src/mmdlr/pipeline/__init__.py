"""`mmdlr run`: the stages tied together, resumable, with provenance."""
