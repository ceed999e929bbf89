"""Analyses of fitted Statistical Cell models."""

from ._coupling import StructureCoupling, differential_coupling, structure_coupling
from ._latent import (
    beta_sweep,
    latent_feature_correlations,
    latent_walk,
    rank_latent_dimensions,
)

__all__ = [
    "rank_latent_dimensions",
    "latent_walk",
    "latent_feature_correlations",
    "beta_sweep",
    "structure_coupling",
    "differential_coupling",
    "StructureCoupling",
]
