"""Saving fitted estimators to a folder without pickles: weights in safetensors, the rest JSON.

A saved model is a folder holding ``cellgen.json`` (the class, its parameters,
what ``fit`` learned about the data, the training history and the versions that
wrote it) and ``weights.safetensors`` (the network's tensors); a StatisticalCell
keeps its two models in sub-folders. Loading reads only these two formats, so a
model from another lab cannot run code on the machine that loads it.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted

from ..io._atomic import atomic_directory, check_not_working_folder
from ..io._paths import _expanduser
from ..module import VAE, ConditionalVAE

__all__ = []

FORMAT = 1
META = "cellgen.json"
WEIGHTS = "weights.safetensors"
#: Module classes a saved file may name; nothing outside this table is ever built.
_MODULES = {"VAE": VAE, "ConditionalVAE": ConditionalVAE}
#: Attributes learned in ``fit`` that travel as JSON, per estimator kind.
_FITTED = ("n_channels_in_", "spatial_shape_", "widths_", "device_", "seed_", "n_train_",
           "n_valid_", "reference_channels_", "structure_channel_", "augment_")
_TUPLES = ("spatial_shape_", "widths_", "spatial_shape", "widths")


def _version():
    from .. import __version__

    return __version__


def _jsonable(value):
    """Plain JSON values: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _untuple(mapping):
    return {k: tuple(v) if k in _TUPLES and isinstance(v, list) else v
            for k, v in mapping.items()}


def _plain_params(estimator):
    params = estimator.get_params(deep=False)
    if params.get("callbacks"):
        warnings.warn(
            "callbacks are code and are not saved; the loaded model has callbacks=None.",
            UserWarning, stacklevel=3,
        )
        params["callbacks"] = None
    seed = params.get("random_state")
    if seed is not None and not isinstance(seed, (int, np.integer)):
        warnings.warn(
            f"random_state is a {type(seed).__name__}, whose state is not saved; the loaded "
            "model has random_state=None (the weights are saved: transform is unchanged, a "
            "refit is not reproducible). Pass an int seed to save it.",
            UserWarning, stacklevel=3,
        )
        params["random_state"] = None
    return _jsonable(params)


def _write_dir(path, overwrite, fill):
    """Fill a new folder and put it in place of ``path`` (all or nothing)."""
    # Refused before anything else, whatever overwrite says.
    path = check_not_working_folder(_expanduser(path))
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(path) as folder:
        fill(folder)
    return path


def _save_vae(estimator, folder):
    check_is_fitted(estimator, "net_")
    module_cls, module_kwargs, target_key = estimator._net_spec_
    meta = {
        "format": FORMAT,
        "class": type(estimator).__name__,
        "cellgen_version": _version(),
        "torch_version": torch.__version__,
        "params": _plain_params(estimator),
        "fitted": {k: _jsonable(getattr(estimator, k)) for k in _FITTED
                   if hasattr(estimator, k)},
        "classes": _jsonable(getattr(estimator, "classes_", None)),
        "module": {"class": module_cls.__name__, "kwargs": _jsonable(module_kwargs),
                   "target_key": target_key},
        "history": _jsonable([dict(row) for row in estimator.net_.history]),
    }
    tensors = {k: v.detach().cpu().contiguous()
               for k, v in estimator.module_.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS))
    (folder / META).write_text(json.dumps(meta, indent=1))


def _save_statistical_cell(estimator, folder):
    check_is_fitted(estimator, "structure_model_")
    params = estimator.get_params(deep=False)
    meta = {
        "format": FORMAT,
        "class": type(estimator).__name__,
        "cellgen_version": _version(),
        "torch_version": torch.__version__,
        # The sub-models are saved whole in their folders.
        "params": _jsonable({k: v for k, v in params.items()
                             if k not in ("reference_model", "structure_model")}),
        "fitted": {k: _jsonable(getattr(estimator, k)) for k in
                   ("n_channels_in_", "spatial_shape_", "reference_channels_",
                    "structure_channel_")},
    }
    for name in ("reference_model", "structure_model"):
        sub = folder / name
        sub.mkdir()
        _save_vae(getattr(estimator, f"{name}_"), sub)
    (folder / META).write_text(json.dumps(meta, indent=1))


def save_vae(estimator, path, *, overwrite=False):
    """Write a fitted ReferenceVAE or ConditionalStructureVAE to the folder ``path``."""
    check_is_fitted(estimator, "net_")
    return _write_dir(path, overwrite, lambda folder: _save_vae(estimator, folder))


def save_statistical_cell(estimator, path, *, overwrite=False):
    """Write a fitted StatisticalCell to the folder ``path``."""
    check_is_fitted(estimator, "structure_model_")
    return _write_dir(path, overwrite, lambda folder: _save_statistical_cell(estimator, folder))


_REQUIRED = {"params": dict, "fitted": dict}
_REQUIRED_VAE = {"module": dict, "history": list}
_SC_FITTED = ("n_channels_in_", "spatial_shape_", "reference_channels_", "structure_channel_")


def _read_meta(path, cls, warn=True):
    path, expected = _expanduser(path), cls.__name__
    meta_file = path / META
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"{meta_file} not found: {path} is not a model saved by cellgen's save()."
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta_file} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_file} is malformed: it holds a {type(meta).__name__}, not "
                         "the object save() writes.")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_file} has format {meta.get('format')!r}; this cellgen "
                         f"reads format {FORMAT}.")
    if meta.get("class") != expected:
        raise ValueError(f"{path} holds a {meta.get('class')}, not a {expected}; load it "
                         f"with {meta.get('class')}.load().")
    required = dict(_REQUIRED, **({} if expected == "StatisticalCell" else _REQUIRED_VAE))
    bad = [k for k, kind in required.items() if not isinstance(meta.get(k), kind)]
    if bad:
        raise ValueError(f"{meta_file} is malformed: {bad} missing or of the wrong type.")
    newer = f"saved by cellgen {meta.get('cellgen_version')}, this is {_version()}"
    unknown = sorted(set(meta["params"]) - set(cls().get_params(deep=False)))
    if unknown:
        raise ValueError(f"{meta_file} names parameters {unknown} that this cellgen does not "
                         f"have ({newer}).")
    allowed = set(_SC_FITTED if expected == "StatisticalCell" else _FITTED)
    unknown = sorted(set(meta["fitted"]) - allowed)
    if unknown:
        raise ValueError(f"{meta_file} names fitted attributes {unknown} that this cellgen "
                         f"does not have ({newer}).")
    needed = (_SC_FITTED if expected == "StatisticalCell"
              else ("n_channels_in_", "spatial_shape_", "widths_", "device_"))
    missing = [k for k in needed if k not in meta["fitted"]]
    if missing:
        raise ValueError(f"{meta_file} is malformed: fitted attributes {missing} missing.")
    if warn and meta.get("cellgen_version") != _version():
        # Attributed to the caller's line: _read_meta <- load_* <- Class.load <- caller.
        warnings.warn(
            f"{path} was saved with cellgen {meta.get('cellgen_version')} and is loaded with "
            f"cellgen {_version()}; check that it behaves as expected.",
            UserWarning, stacklevel=4,
        )
    return meta


def load_vae(cls, path, device=None, warn=True):
    from skorch.history import History

    path = _expanduser(path)
    meta = _read_meta(path, cls, warn=warn)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found; the saved model is incomplete.")
    estimator = cls(**_untuple(meta["params"]))
    if device is not None:
        estimator.set_params(device=device)
    for key, value in _untuple(meta["fitted"]).items():
        setattr(estimator, key, value)
    if device is not None:
        from ..train import resolve_device

        estimator.device_ = resolve_device(device)
    else:
        from ._base import _available_device

        estimator.device_ = _available_device(estimator.device_)
    if meta.get("classes") is not None:
        estimator.label_encoder_ = LabelEncoder()
        estimator.label_encoder_.classes_ = np.asarray(meta["classes"])
        estimator.classes_ = estimator.label_encoder_.classes_
    module = meta["module"]
    if module["class"] not in _MODULES:
        raise ValueError(f"{path}: unknown module {module['class']!r}; expected one of "
                         f"{sorted(_MODULES)}.")
    estimator._net_spec_ = (_MODULES[module["class"]], _untuple(module["kwargs"]),
                            module["target_key"])
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{weights} could not be read as safetensors: {exc}") from exc
    estimator._restore_net(state, History(meta["history"]))
    return estimator


def load_statistical_cell(cls, path, device=None):
    from ._conditional import ConditionalStructureVAE
    from ._reference import ReferenceVAE

    path = _expanduser(path)
    meta = _read_meta(path, cls)
    # One version warning for the cell, not one more per model inside it.
    reference = load_vae(ReferenceVAE, path / "reference_model", device, warn=False)
    structure = load_vae(ConditionalStructureVAE, path / "structure_model", device, warn=False)
    params = _untuple(meta["params"])
    estimator = cls(reference_model=ReferenceVAE(**reference.get_params()),
                    structure_model=ConditionalStructureVAE(**structure.get_params()),
                    **params)
    for key, value in meta["fitted"].items():
        setattr(estimator, key, tuple(value) if key == "spatial_shape_" else value)
    estimator.reference_model_ = reference
    estimator.structure_model_ = structure
    estimator.classes_ = structure.classes_
    return estimator
