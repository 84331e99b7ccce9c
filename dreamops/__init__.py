"""dreamops: train robot policies in learned world models and ship them safely."""
__version__ = "0.1.0"
