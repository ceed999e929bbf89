"""Checkpoints after every epoch; resuming after a SIGKILL reaches the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cellgen import ReferenceVAE
from cellgen.datasets import make_cells

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(n_latent=4, widths=(8, 16), batch_size=16, lr=1e-3, device="cpu",
                random_state=0)

KILLED_RUN = """
import os, signal, sys
from skorch.callbacks import Callback
from cellgen import ReferenceVAE
from cellgen.datasets import make_cells

class KillMidEpoch(Callback):
    def on_batch_end(self, net, **kwargs):
        # SIGKILL: no cleanup, no exception handler, like a preempted job.
        if len(net.history) == 3 and len(net.history[-1]["batches"]) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

X, _, _ = make_cells(64, shape=(16, 16), random_state=0)
ReferenceVAE(max_epochs=5, checkpoint_dir=sys.argv[1], callbacks=[KillMidEpoch()],
             **{settings}).fit(X[:, :2])
"""


@pytest.fixture(scope="module")
def X():
    return make_cells(64, shape=(16, 16), random_state=0)[0][:, :2]


def _load_last(folder):
    return torch.load(Path(folder) / "last.pt", map_location="cpu", weights_only=True)


def test_resume_after_sigkill_matches_an_uninterrupted_run(X, tmp_path):
    script = KILLED_RUN.replace("{settings}", repr(SETTINGS))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # Killed in epoch 3: the checkpoint holds the two finished epochs.
    assert len(json.loads(_load_last(tmp_path)["history"])) == 2
    resumed = ReferenceVAE(max_epochs=5, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    straight = ReferenceVAE(max_epochs=5, **SETTINGS).fit(X)
    assert len(resumed.history_) == 5  # max_epochs in total, not 5 more
    # Same weights, data order and noise draws: identical up to float rounding
    # between processes (the same CPU kernels; 1e-5 leaves room for thread
    # scheduling in reductions).
    np.testing.assert_allclose(resumed.transform(X), straight.transform(X), atol=1e-5)
    np.testing.assert_allclose(resumed.history_["valid_loss"], straight.history_["valid_loss"],
                               rtol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_finished_run_is_not_trained_again(X, tmp_path):
    first = ReferenceVAE(max_epochs=2, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    again = ReferenceVAE(max_epochs=2, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    assert len(again.history_) == 2
    np.testing.assert_array_equal(again.transform(X), first.transform(X))


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(X, tmp_path, monkeypatch):
    from cellgen.train import _checkpoint

    ReferenceVAE(max_epochs=2, checkpoint_dir=tmp_path, **SETTINGS).fit(X)

    def torn_save(obj, path):
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError("killed while writing")

    monkeypatch.setattr(_checkpoint.torch, "save", torn_save)
    with pytest.raises(OSError, match="killed while writing"):
        ReferenceVAE(max_epochs=3, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    monkeypatch.undo()
    assert len(json.loads(_load_last(tmp_path)["history"])) == 2  # still loads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_checkpoint_of_another_run_is_refused(X, tmp_path):
    ReferenceVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    other = dict(SETTINGS, lr=5e-3)
    with pytest.raises(ValueError, match="written by a different run"):
        ReferenceVAE(max_epochs=2, checkpoint_dir=tmp_path, **other).fit(X)


def test_checkpoint_of_other_augmentation_is_refused(X, tmp_path):
    ReferenceVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    with pytest.raises(ValueError, match=r"\['augment'\] differ"):
        ReferenceVAE(max_epochs=2, checkpoint_dir=tmp_path, augment="flips", **SETTINGS).fit(X)


def test_checkpoint_longer_than_max_epochs_is_refused(X, tmp_path):
    ReferenceVAE(max_epochs=3, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    with pytest.raises(ValueError, match="holds 3 epochs of this run, more than max_epochs=1"):
        ReferenceVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    assert len(ReferenceVAE(max_epochs=3, checkpoint_dir=tmp_path, **SETTINGS)
               .fit(X).history_) == 3


def test_resume_without_random_state(X, tmp_path):
    # Each fit without random_state draws its seed; running the interrupted fit again
    # must take the interrupted run's seed, or no unseeded fit could ever resume.
    unseeded = dict(SETTINGS, random_state=None)
    first = ReferenceVAE(max_epochs=2, checkpoint_dir=tmp_path, **unseeded).fit(X)
    resumed = ReferenceVAE(max_epochs=3, checkpoint_dir=tmp_path, **unseeded).fit(X)
    assert len(resumed.history_) == 3 and resumed.seed_ == first.seed_
    assert resumed.history_["train_loss"].iloc[1] == first.history_["train_loss"].iloc[1]
    # Without a checkpoint, unseeded fits still differ.
    other = ReferenceVAE(max_epochs=1, **unseeded).fit(X)
    assert other.seed_ != first.seed_


def test_numpy_scalar_settings_are_checkpointed(X, tmp_path):
    # As a search grid built with numpy hands them out.
    settings = dict(SETTINGS, n_latent=np.int64(4), lr=np.float32(1e-3), beta=np.float64(0.5))
    ReferenceVAE(max_epochs=1, checkpoint_dir=tmp_path, **settings).fit(X)
    resumed = ReferenceVAE(max_epochs=2, checkpoint_dir=tmp_path, **settings).fit(X)
    assert len(resumed.history_) == 2


def test_checkpoint_of_other_cells_is_refused(X, tmp_path):
    # Same settings, same number of cells, other cells: e.g. the next fold of a
    # cross-validation sharing one checkpoint_dir. Resuming would hand back a model
    # that never saw these cells.
    ReferenceVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    other = X[::-1].copy()
    with pytest.raises(ValueError, match="written by a different run"):
        ReferenceVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(other)
    # The same cells again resume (nothing left to train: the weights are the saved ones).
    again = ReferenceVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X)
    first = ReferenceVAE(max_epochs=1, **SETTINGS).fit(X)
    np.testing.assert_allclose(again.transform(X), first.transform(X), atol=1e-5)


def test_structure_labels_are_part_of_the_run(tmp_path):
    from cellgen import ConditionalStructureVAE

    X, y, _ = make_cells(32, shape=(16, 16), random_state=0)
    ConditionalStructureVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(X, y)
    with pytest.raises(ValueError, match="written by a different run"):
        ConditionalStructureVAE(max_epochs=1, checkpoint_dir=tmp_path, **SETTINGS).fit(
            X, np.roll(y, 1))


def test_float16_resume_keeps_the_loss_scale(X, tmp_path):
    # fp16 training skips steps while its loss scale settles; a resumed run must
    # carry on with the settled scale, not start again from 65536.
    params = dict(SETTINGS, precision="fp16")
    straight = ReferenceVAE(max_epochs=6, **params).fit(X)
    ReferenceVAE(max_epochs=3, checkpoint_dir=tmp_path, **params).fit(X)
    saved = _load_last(tmp_path)["scaler"]["scale"]
    assert saved < 65536
    resumed = ReferenceVAE(max_epochs=6, checkpoint_dir=tmp_path, **params).fit(X)
    assert resumed.net_.scaler_.get_scale() == straight.net_.scaler_.get_scale()
    np.testing.assert_allclose(resumed.transform(X), straight.transform(X), atol=1e-5)
