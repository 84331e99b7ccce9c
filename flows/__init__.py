"""dreamops flows."""
