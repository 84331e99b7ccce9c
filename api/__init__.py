"""dreamops api."""
