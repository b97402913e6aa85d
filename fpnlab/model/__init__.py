"""fpnlab.model."""
