"""Lesion region of interest: largest slice, bounding-box crop, cached crops."""
