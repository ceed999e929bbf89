"""Analyses of fitted Statistical Cell models."""

from ._latent import rank_latent_dimensions

__all__ = ["rank_latent_dimensions"]
