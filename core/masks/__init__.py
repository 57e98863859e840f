"""The subject's mask: the automatic cut-out and its clean-up, click selection, brush strokes, edge matting."""
