"""Data-parallel training: two processes against one, same data, epochs and global batch.

Trains a ReferenceVAE on synthetic cells once in one process (batch 32) and once in two
processes launched with torchrun (batch 16 each, Gloo on the CPU, NCCL with GPUs), for
several seeds, and reports the final validation ELBO and the wall time of each. The two
should reach the same ELBO within run-to-run noise (the spread over seeds).

Writes ``benchmarks/out/distributed.json`` and prints a markdown table.

Run: ``python benchmarks/bench_distributed.py [--seeds 3] [--epochs 10] [--n-cells 600]``
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()

parser = argparse.ArgumentParser()
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--n-cells", type=int, default=600)
parser.add_argument("--size", type=int, default=32)
parser.add_argument("--processes", type=int, default=2)
parser.add_argument("--worker", nargs=2, metavar=("OUT", "SEED"), help=argparse.SUPPRESS)
args = parser.parse_args()
GLOBAL_BATCH = 32


def worker(out, seed):
    """One process: fit and, on rank 0, write the history."""
    import torch

    from cellgen import ReferenceVAE
    from cellgen.datasets import make_cells

    world_size = int(os.environ.get("WORLD_SIZE", 1))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    X, _, _ = make_cells(args.n_cells, shape=(args.size, args.size), random_state=0)
    model = ReferenceVAE(n_latent=16, widths=(16, 32, 64), beta=0.05, lr=1e-3,
                         max_epochs=args.epochs, batch_size=GLOBAL_BATCH // world_size,
                         random_state=int(seed))
    start = time.perf_counter()
    model.fit(X[:, :2])
    seconds = time.perf_counter() - start
    if int(os.environ.get("RANK", 0)) == 0:
        Path(out).write_text(json.dumps({
            "world_size": world_size, "seconds": seconds, "device": model.device_,
            "valid_elbo": model.history_["valid_elbo"].tolist()}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(processes, seed, folder):
    out = Path(folder) / f"p{processes}_s{seed}.json"
    cmd = [sys.executable, str(HERE), "--epochs", str(args.epochs), "--n-cells",
           str(args.n_cells), "--size", str(args.size), "--worker", str(out), str(seed)]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
               str(processes), "--master_addr", "127.0.0.1", "--master_port",
               str(free_port()), *cmd[1:]]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


if args.worker:
    worker(*args.worker)
    sys.exit(0)

import torch  # noqa: E402  (only the parent needs versions)

import cellgen  # noqa: E402

results = {1: [], args.processes: []}
with tempfile.TemporaryDirectory() as folder:
    for seed in range(args.seeds):
        for processes in results:
            results[processes].append(run(processes, seed, folder))

rows = []
for processes, runs in results.items():
    final = [r["valid_elbo"][-1] for r in runs]
    rows.append({"processes": processes, "batch_per_process": GLOBAL_BATCH // processes,
                 "final_valid_elbo": final, "mean": statistics.mean(final),
                 "sd": statistics.stdev(final) if len(final) > 1 else 0.0,
                 "median_seconds": statistics.median(r["seconds"] for r in runs),
                 "device": runs[0]["device"]})
info = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "cellgen": cellgen.__version__,
        "n_cells": args.n_cells, "size": args.size, "epochs": args.epochs,
        "seeds": args.seeds}
out = HERE.parent / "out"
out.mkdir(exist_ok=True)
(out / "distributed.json").write_text(json.dumps({"info": info, "results": rows}, indent=2))
print(json.dumps(info))
print("| processes | batch per process | final validation ELBO per seed | mean ± sd | "
      "median s |")
print("|---|---|---|---|---|")
for r in rows:
    print(f"| {r['processes']} | {r['batch_per_process']} | "
          f"{', '.join(f'{v:.1f}' for v in r['final_valid_elbo'])} | "
          f"{r['mean']:.1f} ± {r['sd']:.1f} | {r['median_seconds']:.1f} |")
