"""fpnlab.engine."""
