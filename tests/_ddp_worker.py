"""One process of a data-parallel fit (launched by torchrun from test_distributed.py).

Writes what the test compares: the history, a checksum of the weights, a few embeddings.
"""

import json
import os
import sys

import torch

from cellgen import ReferenceVAE
from cellgen.datasets import make_cells

SETTINGS = dict(n_latent=4, widths=(8, 16), max_epochs=8, lr=3e-3, device="cpu")


def data():
    X, _, _ = make_cells(160, shape=(16, 16), random_state=0)
    return X[:, :2]


def fit(batch_size, seed):
    return ReferenceVAE(batch_size=batch_size, random_state=seed, **SETTINGS).fit(data())


def summary(est):
    state = est.module_.state_dict()
    return {"valid_elbo": est.history_["valid_elbo"].tolist(),
            "train_loss": est.history_["train_loss"].tolist(),
            "n_train_batches": [sum("train_loss" in b for b in row["batches"])
                                for row in est.net_.history],
            "checksum": float(sum(v.double().sum() for v in state.values())),
            "z": est.transform(data()[:8]).tolist()}


if __name__ == "__main__":
    torch.set_num_threads(1)
    out, batch_size, seed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seed = None if seed == "none" else int(seed)
    result = dict(summary(fit(batch_size, seed)), rank=int(os.environ["RANK"]),
                  world_size=int(os.environ["WORLD_SIZE"]))
    with open(os.path.join(out, f"rank{result['rank']}.json"), "w") as f:
        json.dump(result, f)
