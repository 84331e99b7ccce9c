"""dreamops registry."""
