"""netaudit: a network exposure scanner for TensorFlow servers."""

__version__ = "0.1.0"
