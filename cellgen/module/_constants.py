"""Names of the loss terms, shared by the module, the training loop and the history."""

LOSS = "loss"
RECONSTRUCTION = "reconstruction"
KL = "kl"
ELBO = "elbo"

#: Terms recorded per batch and averaged per epoch in the training history.
TERMS = (RECONSTRUCTION, KL, ELBO)
