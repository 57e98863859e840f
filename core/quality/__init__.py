"""Quality: the synthetic set with exact mattes, and the evaluation against alpha mattes."""
