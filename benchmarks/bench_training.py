"""Training and inference speed of the paper's networks, estimator against plain PyTorch.

What is measured, for the reference model (``ReferenceVAE``, module ``cellgen.module.VAE``,
2 channels) and the structure model (``ConditionalStructureVAE``, module
``cellgen.module.ConditionalVAE``, 1 structure channel given 2 reference channels and one of
2 labels), in 2D and 3D, with the paper's widths 32…512, latent 512 and batch 32:

- **Training throughput**, cells/s = batch / median step time. An estimator step is timed by
  a skorch callback from the end of one training batch to the end of the next, so it holds
  everything the estimator does per step (loading and collating the batch, moving it to the
  device, forward, loss, backward, Adam, the per-batch history). The warm-up steps (1, or 3
  with ``--compile``, where they hold the compilation) are run and discarded.
- Beside it, a **plain PyTorch loop** over the same module with the same Adam settings
  (lr 2e-4, betas 0.9/0.999, β 0.5), the same precision (``torch.autocast``, loss in float32
  as in the estimator, a gradient scaler in float16) and the same memory layout, in the same
  run; the **ratio** of step times estimator/plain is the estimator's overhead.
- **Peak memory** of each. On CUDA: ``torch.cuda.max_memory_allocated`` above what was
  allocated before, reset before each measurement (tensors only, not the CUDA context or the
  caching allocator's slack). On the CPU: growth of the process's peak resident set
  (``getrusage(RUSAGE_SELF).ru_maxrss``), a high-water mark of the whole process: a setting
  that needs less than an earlier one shows 0. The JSON also holds the highest resident set
  sampled every 10 ms during the setting, above where it started (freed memory that the
  allocator keeps counts as already there, so this too is a lower bound).
- **Fast paths** as extra rows: each of ``--precisions`` (``bf16`` is the estimators'
  ``precision="bf16"``, the default on a GPU); the other memory layout with the device's
  default precision (the estimators use channels-last on every device; the channels-first
  layout is forced by a subclass overriding ``_channels_last``); and
  ``torch.compile`` with ``--compile`` (the estimators' ``compile=True``; the plain loop
  compiles the module the same way).
- **Inference throughput** (cells/s) of the fitted estimator: ``transform``,
  ``score_samples`` (``n_elbo_samples=10``), ``sample`` and, for the structure model,
  ``impute``; and transform rate / training rate. The weights come from the timed fit (speed
  does not depend on them). Compiled rows have none: inference is never compiled.
- **Achieved TFLOP/s**: the FLOPs of one training step (forward and backward of the plain
  module in float32, batch 32), counted once per model and size with
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products only),
  divided by the median step time. On a GPU whose peak is known, also the fraction of it.

Sizes are written as the paper writes them, width×height[×depth]: ``--shape2d 128,96`` makes
arrays ``(n, C, 96, 128)`` and ``--shape3d 128,96,64`` arrays ``(n, C, 64, 96, 128)``.
(The earlier version of this script took ``--shape 128,96`` as the array shape itself,
``(n, C, 128, 96)``: the same amount of work, as both sides are multiples of 32.) Inputs are
uniform random images; speed does not depend on the pixels.

Writes ``benchmarks/out/training.json`` (``--out``) and prints markdown tables. Exits with
status 1 when a setting failed (its error is in the JSON and the tables).

Run (one command; on a 2-core CPU the 2D settings take minutes, 3D at 64×48×32 more)::

    python benchmarks/bench_training.py                    # every model, 2D and 3D
    python benchmarks/bench_training.py --compile          # with torch.compile rows
    python benchmarks/bench_training.py --steps 3 --dims 2 --models reference
    python benchmarks/bench_training.py --quick --out /tmp/t.json   # smoke run, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import math
import os
import platform
import resource
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import sklearn
import skorch
import torch
from skorch.callbacks import Callback
from torch.utils.flop_counter import FlopCounterMode

import cellgen
from cellgen import ConditionalStructureVAE, ReferenceVAE
from cellgen.module import VAE, ConditionalVAE

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MODELS = {"reference": ReferenceVAE, "conditional": ConditionalStructureVAE}
N_ELBO_SAMPLES = 10
N_LABELS = 2

# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets, by device-name substring; the
# first match wins, so the more specific names come first. "tf32" is the tensor-core rate
# that float32 convolutions run at when cuDNN may use TF32 (torch's default).
PEAK_TFLOPS = [
    ("H100 PCIe", {"bf16": 756, "fp16": 756, "tf32": 378, "fp32": 51}),
    ("H100", {"bf16": 989, "fp16": 989, "tf32": 495, "fp32": 67}),  # SXM
    ("H200", {"bf16": 989, "fp16": 989, "tf32": 495, "fp32": 67}),  # same chip as H100 SXM
    ("A100", {"bf16": 312, "fp16": 312, "tf32": 156, "fp32": 19.5}),
]
PEAK_SOURCE = "NVIDIA H100/H200/A100 datasheets, dense (without sparsity)"


# ------------------------------------------------------------------------------ options
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--steps", type=int, default=None,
                   help="timed training steps per setting, after the warm-up "
                        "(default 20 on a GPU, 5 on the CPU)")
    p.add_argument("--warmup", type=int, default=None,
                   help="discarded steps before the timed ones (default 1, 3 with --compile)")
    p.add_argument("--models", default="reference,conditional")
    p.add_argument("--dims", default="2,3")
    p.add_argument("--shape2d", "--shape", dest="shape2d", default=None,
                   help="2D size as width,height (default 128,96, the paper's)")
    p.add_argument("--shape3d", default=None,
                   help="3D size as width,height,depth (default 128,96,64 on a GPU, "
                        "64,48,32 on the CPU, where the full size takes minutes a step)")
    p.add_argument("--widths", default=None, help="default 32,64,128,256,512")
    p.add_argument("--latent", type=int, default=None, help="default 512")
    p.add_argument("--batch", type=int, default=None, help="default 32")
    p.add_argument("--precisions", default=None,
                   help="comma-separated among fp32, bf16, fp16 (default fp32,bf16)")
    p.add_argument("--no-layout", action="store_true",
                   help="skip the row with the other memory layout")
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile rows (compiling takes a minute or more on the CPU)")
    p.add_argument("--max-cells", type=int, default=256,
                   help="distinct cells in memory; training cycles through them (epochs)")
    p.add_argument("--infer-cells", type=int, default=None,
                   help="cells per inference call (default 256 on a GPU, 64 on the CPU)")
    p.add_argument("--infer-repeats", type=int, default=None,
                   help="timed calls per inference method, median (default 3 GPU, 1 CPU)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and widths: a smoke run of a few seconds")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "training.json")
    args = p.parse_args(argv)

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        p.error(f"--device {args.device} but no CUDA GPU is available")
    # Explicit options win over --quick, which wins over the device's defaults.
    quick = dict(steps=2, shape2d="32,24", shape3d="16,12,8", widths="8,16", latent=16,
                 batch=8, infer_cells=16, infer_repeats=1)
    full = dict(steps=20 if cuda else 5, shape2d="128,96",
                shape3d="128,96,64" if cuda else "64,48,32", widths="32,64,128,256,512",
                latent=512, batch=32, infer_cells=256 if cuda else 64,
                infer_repeats=3 if cuda else 1)
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.precisions is None:
        args.precisions = "fp32,bf16"
    if args.warmup is None:
        args.warmup = 3 if args.compile else 1

    args.models = _names(args.models, MODELS, "--models")
    args.precisions = _names(args.precisions, PRECISIONS, "--precisions")
    args.dims = [int(d) for d in args.dims.split(",")]
    if not set(args.dims) <= {2, 3}:
        p.error("--dims takes 2, 3 or 2,3")
    args.shape2d, args.shape3d = _size(args.shape2d, 2, p), _size(args.shape3d, 3, p)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        p.error("--steps and --batch must be at least 1, --warmup at least 0")
    return args


def _names(text, allowed, option):
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in allowed]
    if bad or not names:
        raise SystemExit(f"{option}: unknown {bad}; choose among {sorted(allowed)}")
    return names


def _size(text, ndim, parser):
    """Width,height[,depth] as the paper writes sizes → array shape ([Z,] Y, X)."""
    size = tuple(int(v) for v in text.split(","))
    if len(size) != ndim or min(size) < 1:
        parser.error(f"a {ndim}D size takes {ndim} positive integers, got {text!r}")
    return size[::-1]


# ------------------------------------------------------------------------------ helpers
def make_sync(device):
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def layout_format(ndim):
    return torch.channels_last if ndim == 2 else torch.channels_last_3d


def with_layout(cls, channels_last):
    """``cls`` with its memory layout forced (the estimators choose it by device)."""
    return type(cls.__name__, (cls,), {"_channels_last": lambda self: channels_last})


def _rss_now():
    # Current resident set from /proc (Linux); None elsewhere.
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def _maxrss():
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


class PeakMemory:
    """Peak memory of the block: CUDA tensors, or the CPU process's resident set."""

    def __init__(self, device):
        self.cuda = device.startswith("cuda")
        self.result = {}

    def __enter__(self):
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = _maxrss()
            self.start = _rss_now()
            self.sampled = self.start
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        # Polling is cheap (one small read every 10 ms) next to steps of ~0.1 s or more.
        while not self.stop.wait(0.01):
            now = _rss_now()
            if now is not None:
                self.sampled = max(self.sampled, now)

    def __exit__(self, *exc):
        mib = 2.0 ** 20
        if self.cuda:
            torch.cuda.synchronize()
            self.result = {"peak_mib": (torch.cuda.max_memory_allocated() - self.base) / mib,
                           "memory_kind": "cuda_max_memory_allocated"}
        else:
            self.stop.set()
            self.thread.join()
            sampled = None if self.start is None else (self.sampled - self.start) / mib
            self.result = {"peak_mib": (_maxrss() - self.base) / mib,
                           "memory_kind": "rss_high_water_growth",
                           "rss_sampled_growth_mib": sampled}
        return False


class StepTimer(Callback):
    """skorch callback: wall time from the end of one training batch to the end of the next.

    The first step is timed from its ``on_batch_begin``; every later one also holds the
    loading of its batch, which happens before ``on_batch_begin``.
    """

    def __init__(self, sync):
        self.sync = sync
        self.times = []
        self.last = None

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and self.last is None:
            self.sync()
            self.last = time.perf_counter()

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.sync()  # CUDA runs asynchronously: wait for the step's kernels
            now = time.perf_counter()
            self.times.append(now - self.last)
            self.last = now


def autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def make_data(n, shape, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3, *shape), dtype=np.float32)
    labels = np.arange(n) % N_LABELS
    return {"X": X, "X_ref": np.ascontiguousarray(X[:, :2]),
            "y": np.array(["a", "b"])[labels], "codes": labels.astype(np.int64)}


def make_module(model, shape, args):
    kw = dict(widths=args.widths, n_latent=args.latent)
    if model == "reference":
        return VAE(2, shape, **kw)
    return ConditionalVAE(1, 2, N_LABELS, shape, **kw)


def plain_batches(model, data, batch, pin):
    """CPU tensors of each batch (``module(*inputs)``), as a plain loop would hold them."""
    out = []
    for i in range(0, len(data["X"]) - batch + 1, batch):
        if model == "reference":
            inputs = [torch.from_numpy(data["X_ref"][i:i + batch])]
        else:
            inputs = [torch.from_numpy(np.ascontiguousarray(data["X"][i:i + batch, 2:])),
                      torch.from_numpy(data["X_ref"][i:i + batch]),
                      torch.from_numpy(data["codes"][i:i + batch])]
        out.append([t.pin_memory() if pin else t for t in inputs])
    return out


def count_flops(model, shape, data, args):
    """FLOPs of one float32 training step (forward, loss, backward) of the plain module."""
    torch.manual_seed(0)
    module = make_module(model, shape, args).to(args.device).train()
    inputs = [t.to(args.device) for t in plain_batches(model, data, args.batch, False)[0]]
    counter = FlopCounterMode(display=False)
    with counter:
        x_hat, mu, logvar = module(*inputs)
        module.loss(inputs[0], x_hat, mu, logvar, beta=0.5).loss.backward()
    return counter.get_total_flops()


# ------------------------------------------------------------------------------ measuring
def time_estimator(setting, data, args, n_epochs):
    sync = make_sync(args.device)
    cls = MODELS[setting["model"]]
    if setting["layout"] == "other":
        cls = with_layout(cls, not setting["default_channels_last"])
    timer = StepTimer(sync)
    est = cls(widths=args.widths, n_latent=args.latent, batch_size=args.batch,
              max_epochs=n_epochs, validation_fraction=0.0, device=args.device,
              precision=setting["precision"], compile=setting["compile"],
              n_elbo_samples=N_ELBO_SAMPLES, callbacks=[("timer", timer)], random_state=0)
    with PeakMemory(args.device) as mem:
        if setting["model"] == "reference":
            est.fit(data["X_ref"])
        else:
            est.fit(data["X"], data["y"])
    setting["channels_last"] = bool(est._channels_last())
    return est, timer.times, mem.result


def time_plain(setting, data, args, n_steps):
    sync = make_sync(args.device)
    device, dtype = args.device, PRECISIONS[setting["precision"]]
    batches = plain_batches(setting["model"], data, args.batch, device.startswith("cuda"))
    fmt = layout_format(setting["dim"]) if setting["channels_last"] else None
    with PeakMemory(device) as mem:
        torch.manual_seed(0)
        module = make_module(setting["model"], setting["shape"], args).to(device)
        if fmt is not None:
            module.to(memory_format=fmt)
        forward = torch.compile(module) if setting["compile"] else module
        opt = torch.optim.Adam(module.parameters(), lr=2e-4, betas=(0.9, 0.999))
        scaler = torch.amp.GradScaler(torch.device(device).type) if dtype == torch.float16 \
            else None
        module.train()
        times = []
        for step in range(n_steps):
            sync()
            t = time.perf_counter()
            inputs = [b.to(device, non_blocking=True) for b in batches[step % len(batches)]]
            if fmt is not None:
                inputs = [x.contiguous(memory_format=fmt) if x.is_floating_point() else x
                          for x in inputs]
            opt.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                out = forward(*inputs)
            # As in the estimator: the loss (sums over whole images) in float32.
            x_hat, mu, logvar = (o.float() for o in out)
            loss = module.loss(inputs[0], x_hat, mu, logvar, beta=0.5).loss
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            sync()
            times.append(time.perf_counter() - t)
    return times, mem.result


def time_inference(est, model, data, args):
    """Cells/s of each inference method: one small warm-up call, then the median of repeats."""
    n = min(args.infer_cells, len(data["X"]))
    X, X_ref, y = data["X"][:n], data["X_ref"][:n], data["y"][:n]
    if model == "reference":
        calls = {"transform": lambda k: est.transform(X_ref[:k]),
                 "score_samples": lambda k: est.score_samples(X_ref[:k]),
                 "sample": lambda k: est.sample(k, random_state=0)}
    else:
        calls = {"transform": lambda k: est.transform(X[:k], structures=y[:k]),
                 "score_samples": lambda k: est.score_samples(X[:k], structures=y[:k]),
                 "sample": lambda k: est.sample(X_ref[:k], y[:k], random_state=0),
                 "impute": lambda k: est.impute(X_ref[:k], y[:k])}
    rates = {}
    for name, call in calls.items():
        try:
            call(min(n, 4))
            times = []
            for _ in range(args.infer_repeats):
                t = time.perf_counter()
                call(n)  # returns numpy arrays on the CPU, so the device has finished
                times.append(time.perf_counter() - t)
            rates[name] = n / statistics.median(times)
        except Exception as exc:  # noqa: BLE001 - recorded, the other methods still run
            rates[name] = None
            rates.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
    rates["cells"] = n
    return rates


def median_rate(times, batch):
    return batch / statistics.median(times) if times else None


def run_setting(setting, data, flops, args):
    """Train through the estimator and the plain loop; fill ``setting`` with the figures."""
    warmup, batch = args.warmup, args.batch
    batches_per_epoch = len(data["X"]) // batch
    n_epochs = math.ceil((warmup + args.steps) / batches_per_epoch)
    est = None
    try:
        est, times, mem = time_estimator(setting, data, args, n_epochs)
        timed = times[warmup:]
        setting["estimator"] = dict(step_s=statistics.median(timed), steps_s=times,
                                    cells_per_s=median_rate(timed, batch), **mem)
    except Exception as exc:  # noqa: BLE001 - one failing setting must not stop the rest
        setting["error"] = f"estimator: {type(exc).__name__}: {exc}"
        traceback.print_exc()
        # Time the plain loop anyway, in the layout the estimator would have used.
        setting.setdefault("channels_last", setting["default_channels_last"]
                           if setting["layout"] == "default"
                           else not setting["default_channels_last"])
    n_steps = len(setting["estimator"]["steps_s"]) if "estimator" in setting \
        else warmup + args.steps
    try:
        times, mem = time_plain(setting, data, args, n_steps)
        timed = times[warmup:]
        setting["plain"] = dict(step_s=statistics.median(timed), steps_s=times,
                                cells_per_s=median_rate(timed, batch), **mem)
    except Exception as exc:  # noqa: BLE001
        setting["error"] = (setting.get("error", "") + f" plain: {type(exc).__name__}: {exc}"
                            ).strip()
        traceback.print_exc()
    for part in ("estimator", "plain"):
        if part in setting:
            setting[part]["tflops"] = (None if flops is None
                                       else flops / setting[part]["step_s"] / 1e12)
    if "estimator" in setting and "plain" in setting:
        setting["ratio"] = setting["estimator"]["step_s"] / setting["plain"]["step_s"]
    if est is not None and not setting["compile"]:
        inf = time_inference(est, setting["model"], data, args)
        if inf.get("transform") and "estimator" in setting:
            inf["transform_over_training"] = (inf["transform"]
                                              / setting["estimator"]["cells_per_s"])
        setting["inference"] = inf
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if setting["compile"]:
        torch._dynamo.reset()  # keep later compiled settings from sharing caches and limits
    return setting


def settings_for(model, dim, shape, args, cuda):
    """The rows of one model and size: each precision, the other layout, compiled."""
    # The device's default precision (the estimators' "auto") carries the extra rows.
    auto = "bf16" if cuda and torch.cuda.is_bf16_supported() else ("fp16" if cuda else "fp32")
    fast = auto if auto in args.precisions else args.precisions[0]
    base = dict(model=model, dim=dim, size="×".join(str(s) for s in shape[::-1]),
                shape=list(shape), default_channels_last=True,
                compile=False, layout="default")
    rows = [dict(base, precision=p) for p in args.precisions]
    if not args.no_layout:
        rows.append(dict(base, precision=fast, layout="other"))
    if args.compile:
        rows.append(dict(base, precision=fast, compile=True))
    return rows


def peak_for(device_name, precision):
    """(peak TFLOP/s, key) of the device for this precision, or (None, None)."""
    for name, peaks in PEAK_TFLOPS:
        if name.lower() in device_name.lower():
            key = precision
            if precision == "fp32" and torch.backends.cudnn.allow_tf32:
                key = "tf32"  # float32 convolutions run on tensor cores as TF32
            return peaks[key], key
    return None, None


def machine_info(args):
    cuda = args.device.startswith("cuda")
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    info = dict(
        date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        platform=platform.platform(), machine=platform.machine(), cpu=cpu,
        cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"), python=platform.python_version(),
        device=args.device,
        device_name=torch.cuda.get_device_name(args.device) if cuda else cpu,
        torch=torch.__version__, skorch=skorch.__version__, sklearn=sklearn.__version__,
        numpy=np.__version__, cellgen=cellgen.__version__,
        cuda=torch.version.cuda if cuda else None,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        cudnn_allow_tf32=torch.backends.cudnn.allow_tf32 if cuda else None,
    )
    return info


# ------------------------------------------------------------------------------ reporting
def _f(value, fmt="{:.0f}"):
    return "—" if value is None else fmt.format(value)


def print_tables(info, config, rows, flops):
    cuda = info["device"].startswith("cuda")
    print("## Machine\n")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print(f"\nwidths {config['widths']}, latent {config['latent']}, batch {config['batch']}, "
          f"{config['steps']} timed steps after {config['warmup']} warm-up "
          f"(median step time); inference on {config['infer_cells']} cells, "
          f"median of {config['infer_repeats']}.\n")

    mem_label = ("peak CUDA MiB (max_memory_allocated)" if cuda else
                 "peak RSS growth MiB, high-water (sampled)")
    peak_col = " % of peak |" if cuda else ""
    print("## Training\n")
    print("| model | dims | shape (X×Y[×Z]) | precision | layout | compile | estimator cells/s "
          f"| plain cells/s | ratio est/plain step | est. TFLOP/s | plain TFLOP/s |{peak_col} "
          f"{mem_label}: est. / plain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cuda else "") + "---|")
    for r in rows:
        est, plain = r.get("estimator", {}), r.get("plain", {})
        layout = "channels-last" if r.get("channels_last") else "channels-first"
        cells = [r["model"], f"{r['dim']}D", r["size"], r["precision"], layout,
                 "yes" if r["compile"] else "no", _f(est.get("cells_per_s"), "{:.1f}"),
                 _f(plain.get("cells_per_s"), "{:.1f}"), _f(r.get("ratio"), "{:.2f}"),
                 _f(est.get("tflops"), "{:.3f}"), _f(plain.get("tflops"), "{:.3f}")]
        if cuda:
            cells.append(_f(r.get("fraction_of_peak") and 100 * r["fraction_of_peak"],
                            "{:.1f}%"))
        memory = []
        for part in (est, plain):
            text = _f(part.get("peak_mib"))
            if part.get("rss_sampled_growth_mib") is not None:
                text += f" ({part['rss_sampled_growth_mib']:.0f})"
            memory.append(text)
        cells.append(" / ".join(memory))
        if "error" in r:
            cells[0] += " (failed, below)"
        print("| " + " | ".join(cells) + " |")
    if not cuda:
        print("\nMemory on the CPU: growth of the process's peak resident set (ru_maxrss) "
              "during the setting. It is a high-water mark over the whole run, so a setting "
              "that needs less than an earlier one shows 0. In parentheses: the highest "
              "resident set sampled every 10 ms, above the setting's start (memory freed "
              "earlier but kept by the allocator is not counted again: a lower bound).")
    else:
        print(f"\n% of peak: the estimator's TFLOP/s over the device's dense peak for the "
              f"precision ({PEAK_SOURCE}); float32 rows use the TF32 peak when cuDNN may "
              f"use TF32 (cudnn_allow_tf32 above).")

    inferred = [r for r in rows if r.get("inference")]
    if inferred:
        print("\n## Inference (cells/s)\n")
        print(f"| model | dims | precision | layout | transform | score_samples "
              f"({N_ELBO_SAMPLES} samples) | sample | impute | transform / training |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in inferred:
            inf = r["inference"]
            layout = "channels-last" if r.get("channels_last") else "channels-first"
            print(f"| {r['model']} | {r['dim']}D | {r['precision']} | {layout} | "
                  f"{_f(inf.get('transform'), '{:.1f}')} | "
                  f"{_f(inf.get('score_samples'), '{:.1f}')} | "
                  f"{_f(inf.get('sample'), '{:.1f}')} | {_f(inf.get('impute'), '{:.1f}')} | "
                  f"{_f(inf.get('transform_over_training'), '{:.1f}')} |")

    failures = [(r, f"{name}: {error}") for r in rows
                for name, error in (r.get("inference") or {}).get("errors", {}).items()]
    failures = [(r, r["error"]) for r in rows if "error" in r] + failures
    if failures:
        print("\n## Failed\n")
        for r, error in failures:
            print(f"- {r['model']} {r['dim']}D {r['precision']} "
                  f"{'channels-last' if r.get('channels_last') else 'channels-first'}"
                  f"{' compiled' if r['compile'] else ''}: {error}")

    print("\n## FLOPs of one training step (FlopCounterMode, forward + backward, float32)\n")
    print("| model | dims | shape (X×Y[×Z]) | GFLOP per step | GFLOP per cell |")
    print("|---|---|---|---|---|")
    for (model, dim, shape), value in flops.items():
        size = "×".join(str(s) for s in shape[::-1])
        print(f"| {model} | {dim}D | {size} | {_f(value and value / 1e9, '{:.4g}')} | "
              f"{_f(value and value / 1e9 / config['batch'], '{:.4g}')} |")


# ------------------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    cuda = args.device.startswith("cuda")
    info = machine_info(args)
    config = dict(steps=args.steps, warmup=args.warmup, widths=list(args.widths),
                  latent=args.latent, batch=args.batch, models=args.models, dims=args.dims,
                  shape2d_xy=list(args.shape2d[::-1]), shape3d_xyz=list(args.shape3d[::-1]),
                  precisions=args.precisions, compile=args.compile, quick=args.quick,
                  max_cells=args.max_cells, infer_cells=args.infer_cells,
                  infer_repeats=args.infer_repeats, n_elbo_samples=N_ELBO_SAMPLES,
                  command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    print(json.dumps(info), flush=True)

    rows, flops = [], {}
    for dim in args.dims:
        shape = args.shape2d if dim == 2 else args.shape3d
        # Enough distinct cells for every step, up to --max-cells; later epochs reuse them.
        n_batches = max(1, min(args.warmup + args.steps, args.max_cells // args.batch))
        data = make_data(n_batches * args.batch, shape)
        for model in args.models:
            key = (model, dim, tuple(shape))
            try:
                flops[key] = count_flops(model, shape, data, args)
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                flops[key] = None
            for setting in settings_for(model, dim, shape, args, cuda):
                label = (f"{model} {dim}D {setting['precision']} layout={setting['layout']} "
                         f"compile={setting['compile']}")
                print(f"... {label}", flush=True)
                t = time.perf_counter()
                run_setting(setting, data, flops[key], args)
                setting["flops_per_step"] = flops[key]
                if cuda and setting.get("estimator", {}).get("tflops"):
                    peak, peak_key = peak_for(info["device_name"], setting["precision"])
                    if peak is not None:
                        setting["fraction_of_peak"] = setting["estimator"]["tflops"] / peak
                        setting["peak_tflops"], setting["peak_kind"] = peak, peak_key
                setting["wall_s"] = time.perf_counter() - t
                rows.append(setting)
        del data
        gc.collect()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = dict(info=info, config=config, results=rows,
                  flops_per_step=[dict(model=m, dim=d, shape=list(s), flops=v)
                                  for (m, d, s), v in flops.items()],
                  peak_tflops_source=PEAK_SOURCE if cuda else None)
    args.out.write_text(json.dumps(record, indent=2))
    print()
    print_tables(info, config, rows, flops)
    failed = [r for r in rows if "error" in r or (r.get("inference") or {}).get("errors")]
    print(f"\nWrote {args.out}.")
    if failed:
        print(f"{len(failed)} setting(s) failed; see 'error' in the JSON.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
