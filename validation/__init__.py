"""dreamops validation."""
