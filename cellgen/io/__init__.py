"""Reading and writing cell images and manifests."""

__all__ = []
