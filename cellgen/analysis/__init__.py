"""Analyses of fitted Statistical Cell models."""

from ._coupling import StructureCoupling, differential_coupling, structure_coupling
from ._latent import (
    beta_sweep,
    latent_feature_correlations,
    latent_walk,
    rank_latent_dimensions,
)
from ._profiling import aggregate_profiles, moa_accuracy

__all__ = [
    "rank_latent_dimensions",
    "latent_walk",
    "latent_feature_correlations",
    "beta_sweep",
    "aggregate_profiles",
    "moa_accuracy",
    "structure_coupling",
    "differential_coupling",
    "StructureCoupling",
]
