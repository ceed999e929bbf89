"""Training and inference speed of the paper's 2D network, estimator against plain torch.

Measures, at 2D 128×96 with the paper's widths 32…512 and batch 32:
- seconds per training step through ``ReferenceVAE.fit`` / ``ConditionalStructureVAE.fit``
  (skorch), and through a plain PyTorch loop over the same module, in the same run, so the
  estimator's overhead is a ratio;
- transform throughput (cells/s).
Writes ``benchmarks/out/training.json`` and prints a markdown table.

Run: ``python benchmarks/bench_training.py [--steps 5] [--shape 128,96]``
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback

import cellgen
from cellgen import ConditionalStructureVAE, ReferenceVAE
from cellgen.module import VAE, ConditionalVAE

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=5, help="timed training steps per setting")
parser.add_argument("--shape", default="128,96")
parser.add_argument("--widths", default="32,64,128,256,512")
parser.add_argument("--device", default="auto")
args = parser.parse_args()
shape = tuple(int(v) for v in args.shape.split(","))
widths = tuple(int(v) for v in args.widths.split(","))
batch = 32
steps = args.steps
device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
    "cpu" if args.device == "auto" else args.device)

rng = np.random.RandomState(0)
n = batch * steps
X = rng.rand(n, 3, *shape).astype(np.float32)
y = np.array(["a", "b"] * (n // 2))


class StepTimer(Callback):
    """skorch callback timing each training batch."""

    def __init__(self):
        self.times = []

    def on_batch_begin(self, net, training=False, **kw):
        if training:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            self.t = time.perf_counter()

    def on_batch_end(self, net, training=False, **kw):
        if training:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)


def plain_loop(module, batches):
    opt = torch.optim.Adam(module.parameters(), lr=2e-4)
    module.train()
    times = []
    for inputs in batches:
        t = time.perf_counter()
        opt.zero_grad()
        x_hat, mu, logvar = module(*inputs)
        module.loss(inputs[0], x_hat, mu, logvar, beta=0.5).loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return times


common = dict(widths=widths, n_latent=512, max_epochs=1, batch_size=batch,
              validation_fraction=0.0, device=device, random_state=0)
results = {}

# Reference model.
timer = StepTimer()
est = ReferenceVAE(callbacks=[("timer", timer)], **common).fit(X[:, :2])
t = time.perf_counter()
est.transform(X[:, :2])
transform_rate = n / (time.perf_counter() - t)
torch.manual_seed(0)
module = VAE(2, shape, widths=widths, n_latent=512).to(device)
batches = [(torch.as_tensor(X[i:i + batch, :2], device=device),) for i in range(0, n, batch)]
plain = plain_loop(module, batches)
results["reference"] = dict(estimator_step_s=statistics.median(timer.times[1:] or timer.times),
                            plain_step_s=statistics.median(plain[1:] or plain),
                            transform_cells_per_s=transform_rate)

# Conditional model.
timer = StepTimer()
est = ConditionalStructureVAE(callbacks=[("timer", timer)], **common).fit(X, y)
torch.manual_seed(0)
module = ConditionalVAE(1, 2, 2, shape, widths=widths, n_latent=512).to(device)
labels = torch.as_tensor(np.arange(n) % 2, device=device)
batches = [(torch.as_tensor(X[i:i + batch, 2:], device=device),
            torch.as_tensor(X[i:i + batch, :2], device=device), labels[i:i + batch])
           for i in range(0, n, batch)]
plain = plain_loop(module, batches)
results["conditional"] = dict(estimator_step_s=statistics.median(timer.times[1:] or timer.times),
                              plain_step_s=statistics.median(plain[1:] or plain))

info = dict(cellgen=cellgen.__version__, torch=torch.__version__, device=device,
            machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
            gpu=torch.cuda.get_device_name() if device.startswith("cuda") else None,
            shape=shape, widths=widths, batch=batch, timed_steps=steps - 1)
out = Path(__file__).parent / "out"
out.mkdir(exist_ok=True)
(out / "training.json").write_text(json.dumps(dict(info=info, results=results), indent=2))
print(json.dumps(info))
print("| model | estimator s/step | plain torch s/step | ratio | transform cells/s |")
print("|---|---|---|---|---|")
for name, r in results.items():
    print(f"| {name} | {r['estimator_step_s']:.2f} | {r['plain_step_s']:.2f} | "
          f"{r['estimator_step_s'] / r['plain_step_s']:.2f} | "
          f"{r.get('transform_cells_per_s', float('nan')):.0f} |")
