"""Train one model across several processes (GPUs or machines) with data parallelism.

Launch the same script once per process with ``torchrun``; each process holds the same
cells and calls ``fit``. cellgen joins the process group that torchrun describes (NCCL on
GPUs, Gloo on CPUs), wraps the network in PyTorch's DistributedDataParallel, trains each
process on its share of every epoch with gradients averaged at every step, and keeps one
training history for all processes, so they choose the same best epoch and end with the
same weights. ``batch_size`` is per process: two processes at 16 take the steps of one
process at 32. Rank 0 saves the model::

    # two processes on this machine (CPUs: Gloo; one GPU each when there are GPUs)
    torchrun --nproc_per_node 2 examples/train_distributed.py --out example_output

    # two machines with 4 GPUs each: run on both, with the first machine's address
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 examples/train_distributed.py --out models

Run without torchrun, it trains in one process. Synthetic cells by default; ``--npz``
takes your own cells (``X`` with reference channels first, as for ``cellgen run``).
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

from cellgen import ReferenceVAE
from cellgen.datasets import make_cells

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="example_output")
parser.add_argument("--npz", default=None, help="an .npz with X (n_cells, C, [Z,] Y, X)")
parser.add_argument("--n-cells", type=int, default=600)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=16, help="per process")
args = parser.parse_args()

if args.npz:
    X = np.load(args.npz)["X"][:, :2]
else:
    X, _, _ = make_cells(args.n_cells, shape=(32, 32), random_state=0)
    X = X[:, :2]  # membrane and DNA

rank = int(os.environ.get("RANK", 0))
world_size = int(os.environ.get("WORLD_SIZE", 1))
model = ReferenceVAE(n_latent=16, widths=(16, 32, 64), beta=0.01, lr=1e-3,
                     max_epochs=args.epochs, batch_size=args.batch_size, random_state=0)
start = time.perf_counter()
model.fit(X)
seconds = time.perf_counter() - start

history = model.history_
if rank == 0:
    # The model keeps the weights of the epoch with the lowest validation loss, which
    # is not the epoch with the highest validation ELBO: with beta = 0.01 the loss
    # trades a growing KL for better reconstructions, so the ELBO can fall as it improves.
    kept = history.loc[history["valid_loss"].idxmin()]
    print(f"{world_size} process(es), {model.n_train_} training cells, batch {args.batch_size} "
          f"per process: {seconds:.1f} s; kept epoch {int(kept['epoch'])} of {len(history)} "
          f"(lowest validation loss {kept['valid_loss']:.2f}), its validation ELBO "
          f"{kept['valid_elbo']:.2f}")
    # Every process holds the same weights; one of them saves.
    model.save(Path(args.out) / "distributed_reference", overwrite=True)
    print(f"saved to {Path(args.out) / 'distributed_reference'}")
