"""Data-parallel training in two processes (torchrun, Gloo on the CPU) against one process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from . import _ddp_worker as worker

HERE = Path(__file__).resolve().parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out, batch_size, seed):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(HERE / "_ddp_worker.py"), str(out), str(batch_size), str(seed)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    return _torchrun(tmp_path_factory.mktemp("ddp"), 8, 0)


def test_ranks_agree_on_history_and_weights(two_processes):
    r0, r1 = two_processes
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    # One history for both: the same losses, hence the same best epoch and weights.
    assert r0["valid_elbo"] == r1["valid_elbo"]
    assert r0["train_loss"] == r1["train_loss"]
    assert r0["checksum"] == r1["checksum"]
    assert r0["z"] == r1["z"]


def test_each_process_trains_on_its_share(two_processes):
    # 144 training cells (10% of 160 held out), 72 a process, batches of 8: 9 batches
    # a process and 18 in the shared history per epoch. Each process going through
    # every cell would give 36.
    assert set(two_processes[0]["n_train_batches"]) == {18}


def test_two_processes_reach_the_elbo_of_one(two_processes):
    # Two processes with batches of 8 take the steps of one process with batches
    # of 16 (gradients are averaged). Run-to-run noise: one process, four seeds.
    single = [worker.summary(worker.fit(16, seed))["valid_elbo"][-1] for seed in range(4)]
    spread = max(single) - min(single)
    assert spread > 0
    final = two_processes[0]["valid_elbo"][-1]
    assert min(single) - spread <= final <= max(single) + spread, (final, single)
    # And training worked at all: the ELBO rose well above where it started
    # (about 13 nats over these 8 epochs).
    assert final - two_processes[0]["valid_elbo"][0] > 5


def test_without_a_seed_the_ranks_still_agree(tmp_path):
    # random_state=None: rank 0 draws the seed, so both take the same validation split.
    r0, r1 = _torchrun(tmp_path, 8, "none")
    assert r0["valid_elbo"] == r1["valid_elbo"]
    assert r0["checksum"] == r1["checksum"]


def test_gpu_processes_bind_their_own_gpu_and_carry_cpu_tensors(monkeypatch):
    # No GPU here: the calls torch would get on one are recorded instead.
    import torch
    import torch.distributed as dist

    from cellgen.train import distributed_world

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group",
                        lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    assert distributed_world() == (1, 2)
    # The GPU first (NCCL uses the current device), then a group with a CPU backend too.
    assert calls == [("set_device", 1), ("init", "cpu:gloo,cuda:nccl")]
