"""How the result looks: the background, the composite of the original photo over it, colour match, shadows, comparison views."""
