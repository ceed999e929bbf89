"""scikit-learn transformers that prepare cell images."""

__all__ = []
