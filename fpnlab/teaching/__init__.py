"""fpnlab.teaching."""
