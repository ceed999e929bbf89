"""Generative torch modules of the Statistical Cell that own their loss."""

from ._constants import ELBO, KL, LOSS, RECONSTRUCTION, TERMS
from ._vae import VAE, ConditionalVAE, LossOutput, gaussian_kl

__all__ = [
    "VAE",
    "ConditionalVAE",
    "LossOutput",
    "gaussian_kl",
    "LOSS",
    "RECONSTRUCTION",
    "KL",
    "ELBO",
    "TERMS",
]
