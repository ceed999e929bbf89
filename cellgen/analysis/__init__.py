"""Analyses of fitted Statistical Cell models."""

from ._collection import map_manifest
from ._coupling import StructureCoupling, differential_coupling, structure_coupling
from ._drug import (
    EffectDirection,
    TwoSampleResult,
    cells_along,
    classifier_auc_test,
    dose_response,
    drug_effects,
    effect_direction,
    energy_distance_test,
    project_onto,
)
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
    "drug_effects",
    "energy_distance_test",
    "classifier_auc_test",
    "effect_direction",
    "project_onto",
    "cells_along",
    "dose_response",
    "TwoSampleResult",
    "EffectDirection",
    "map_manifest",
]
