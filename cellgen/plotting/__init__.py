"""Figures of cell images, latent spaces and training histories.

Built on matplotlib alone. Every function returns a
:class:`matplotlib.figure.Figure` made without pyplot, so nothing is shown and
nothing lingers in pyplot's registry; save a figure with ``fig.savefig``.
"""

from ._coupling import plot_coupling, plot_differential_coupling
from ._drug import plot_dose_response, plot_drug_direction, plot_effect_scatter
from ._images import (
    composite,
    plot_channels,
    plot_image_grid,
    plot_reconstructions,
    project,
)
from ._latent import plot_history, plot_latent_ranking
from ._walks import plot_feature_correlations, plot_latent_walk, plot_rate_distortion

__all__ = [
    "project",
    "composite",
    "plot_image_grid",
    "plot_reconstructions",
    "plot_channels",
    "plot_latent_ranking",
    "plot_history",
    "plot_latent_walk",
    "plot_feature_correlations",
    "plot_rate_distortion",
    "plot_coupling",
    "plot_differential_coupling",
    "plot_drug_direction",
    "plot_effect_scatter",
    "plot_dose_response",
]
