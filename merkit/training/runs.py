"""Run directories: atomic writes, environment capture, and fold-level resume.

Every file a run writes goes through an atomic write: the bytes go to a temporary file in the same
directory, are flushed and fsync'ed, then ``os.replace`` swaps it in. A process killed mid-write leaves
either the old file or the new one, never half of one (at worst a stray ``.*.tmp`` file, ignored).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import merkit
from merkit._io import (
    atomic_handle,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    flatten_dict,
    to_jsonable,
)
from merkit.config import resumable_keys, upgrade_saved
from merkit.errors import MerkitRuntimeError
from merkit.evaluation.metrics import PREDICTION_COLUMNS, PredictionsError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_csv",
    "atomic_torch_save",
    "to_jsonable",
    "capture_env",
    "git_commit",
    "flatten_dict",
    "config_differences",
    "DEFAULT_RESUMABLE_KEYS",
    "RunConfigMismatch",
    "CheckpointError",
    "RunDir",
    "completed_folds",
]

# The atomic writes live on the ground floor (merkit._io) so that data/ can use them too; re-exported here.
_atomic_handle = atomic_handle


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """Write ``df`` as CSV atomically (floats at full round-trip precision); returns the path."""
    return atomic_write_text(path, df.to_csv(index=index, lineterminator="\n"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; returns the path."""
    import torch  # imported here so metrics/runs stay light for callers that never save tensors

    with _atomic_handle(path, "wb") as handle:
        torch.save(obj, handle)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(repo: str | os.PathLike | None = None) -> dict:
    """``dict(commit, dirty)`` of the git checkout holding ``repo`` (default: this package); Nones if none."""
    import subprocess

    repo = Path(repo) if repo is not None else Path(__file__).resolve().parent
    info: dict = {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return info
        info["commit"] = commit.stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if status.returncode == 0:
            info["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def capture_env(repo: str | os.PathLike | None = None) -> dict:
    """What a result depends on besides its config: versions, machine, threads, device, git commit, time.

    ``device`` lists what torch can see (``cuda`` with device names, ``mps``, ``cpu``); the device a run
    actually used belongs in its config/history. ``git`` is the checkout holding merkit (or ``repo``).
    """
    import torch  # lazy: runs (and the metrics it writes) stay importable without loading torch

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return {
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "merkit": merkit.__version__,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "captum": _package_version("captum"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "device": {
            "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
            "cuda_version": torch.version.cuda,
            "mps": mps,
            "default": "cuda" if cuda else "mps" if mps else "cpu",
        },
        "git": git_commit(repo),
    }


# --------------------------------------------------------------------------------------------------
# Run directory
# --------------------------------------------------------------------------------------------------

DEFAULT_RESUMABLE_KEYS: frozenset[str] = resumable_keys()
"""Dotted config keys that only say *how* folds are scheduled, not *what* they compute: they may change
between a run and its resumption. Stated once, as the fields :mod:`merkit.config` marks ``resumable``."""

ENV_VERSION_KEYS = ("merkit", "python", "torch", "numpy", "pandas", "captum")


class RunConfigMismatch(MerkitRuntimeError):
    """The run directory holds results of a different config (or manifest); resuming is refused."""


class CheckpointError(MerkitRuntimeError):
    """A checkpoint file is missing, truncated or otherwise unreadable; the message names the file."""


def config_differences(saved: dict, current: dict, ignore: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Human-readable lines, one per dotted key whose value differs (keys under ``ignore`` skipped)."""
    a, b = flatten_dict(saved), flatten_dict(current)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key in ignore or any(key.startswith(k + ".") for k in ignore):
            continue
        if key not in a:
            lines.append(f"{key}: absent in the saved config, now {b[key]!r}")
        elif key not in b:
            lines.append(f"{key}: saved {a[key]!r}, absent now")
        elif a[key] != b[key]:
            lines.append(f"{key}: saved {a[key]!r}, now {b[key]!r}")
    return lines


def _fold_name(fold: Any) -> str:
    """Directory name of a fold: reversible and collision-free (``casme2/01`` -> ``casme2%2F01``)."""
    from urllib.parse import quote

    return "fold_" + quote(str(fold), safe="")


def _fold_sort_key(fold: Any) -> tuple:
    return (isinstance(fold, str), fold if not isinstance(fold, str) else str(fold))


def completed_folds(path: str | os.PathLike) -> list:
    """The folds with a done marker in the run directory at ``path`` ([] when there is none), read only."""
    folds = []
    for marker in sorted((Path(path) / "folds").glob("fold_*/done.json")):
        try:
            folds.append(json.loads(marker.read_text(encoding="utf-8"))["fold"])
        except (OSError, json.JSONDecodeError, KeyError):
            continue  # an unreadable marker means the fold is not known to be complete
    return sorted(folds, key=_fold_sort_key)


class RunDir:
    """One run's directory: config, environment, per-fold results with done markers, metrics.

    Layout::

        <path>/config.json          resolved config (JSON of the RunConfig)
        <path>/env.json             capture_env() at creation, plus "resumes": [env, …] on each resume
        <path>/manifest.json        {"manifest_hash": …} when given
        <path>/folds/fold_<f>/      predictions.csv, history.csv, checkpoint.pt, done.json
        <path>/predictions.csv      all completed folds (write_predictions)
        <path>/metrics.json         write_metrics
        <path>/figures/

    A fold is complete only when its ``done.json`` exists; the marker is written last, atomically, after
    the fold's files, so a run killed mid-fold leaves that fold incomplete and only that fold is redone.

    Opening an existing directory resumes it, but only under the same config: once a fold is finished, any
    difference outside ``resumable_keys`` (scheduling knobs such as the executor) raises
    :class:`RunConfigMismatch` listing the keys, because finished folds would otherwise be mixed with folds
    computed differently. A directory with no finished fold takes the new config (another device, say, after
    a run that stopped before its first fold).

    Args:
        path: run directory (created with parents).
        config: a dict, or an object with ``to_dict()`` (e.g. :class:`merkit.config.RunConfig`).
        manifest_hash: hash of the manifest the run is evaluated on; a change also refuses resuming.
        resumable_keys: dotted keys allowed to differ on resume.
        capture: record ``env.json`` (tests may switch it off for speed).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        config: dict | Any,
        *,
        manifest_hash: str | None = None,
        resumable_keys: frozenset[str] | set[str] = DEFAULT_RESUMABLE_KEYS,
        capture: bool = True,
    ) -> None:
        self.path = Path(path)
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict or have to_dict(), got {type(config).__name__}")
        # Normalise through JSON so tuples/lists and numpy scalars compare equal to what is on disk.
        self.config: dict = json.loads(json.dumps(to_jsonable(config)))
        self.manifest_hash = manifest_hash
        self.resumable_keys = frozenset(resumable_keys)
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"run directory {self.path} exists and is not a directory")
        self.path.mkdir(parents=True, exist_ok=True)
        self.resumed = self.config_path.exists()
        if self.resumed:
            self._check_resumable()
        atomic_write_json(self.config_path, self.config)
        if manifest_hash is not None:
            atomic_write_json(self.path / "manifest.json", {"manifest_hash": manifest_hash})
        if capture:
            self._record_env()

    # -- paths ------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def env_path(self) -> Path:
        return self.path / "env.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def predictions_path(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def figures_dir(self) -> Path:
        d = self.path / "figures"
        d.mkdir(exist_ok=True)
        return d

    def fold_dir(self, fold: Any, create: bool = True) -> Path:
        """Directory of one fold (``folds/fold_<quoted str(fold)>``; so fold ``1`` and ``"1"`` share one)."""
        d = self.path / "folds" / _fold_name(fold)
        if create:
            d.mkdir(parents=True, exist_ok=True)
        return d

    def checkpoint_path(self, fold: Any) -> Path:
        return self.fold_dir(fold) / "checkpoint.pt"

    def _done_path(self, fold: Any) -> Path:
        return self.fold_dir(fold, create=False) / "done.json"

    # -- resume checks ----------------------------------------------------------------------------
    def _check_resumable(self) -> None:
        try:
            saved = json.loads(self.config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise RunConfigMismatch(
                f"cannot resume {self.path}: its config.json is unreadable ({err}); use a new run "
                f"directory or delete this one"
            ) from err
        saved = upgrade_saved(saved, "config") if isinstance(saved, dict) else saved  # an older kit's key names
        if not self.completed_folds():  # nothing computed to mix with: the new config starts the run afresh
            return
        problems = config_differences(saved, self.config, self.resumable_keys)
        manifest_file = self.path / "manifest.json"
        if self.manifest_hash is not None and manifest_file.exists():
            saved_hash = json.loads(manifest_file.read_text(encoding="utf-8")).get("manifest_hash")
            if saved_hash != self.manifest_hash:
                problems.append(f"manifest_hash: saved {saved_hash!r}, now {self.manifest_hash!r}")
        if problems:
            raise RunConfigMismatch(
                f"refusing to resume {self.path}: it was started with a different config, and its "
                f"{len(self.completed_folds())} finished fold(s) would be mixed with folds computed "
                f"differently. Differences:\n  "
                + "\n  ".join(problems)
                + "\nUse a new run directory, or delete this one to start over."
            )

    def _record_env(self) -> None:
        env = capture_env()
        if not self.env_path.exists():
            atomic_write_json(self.env_path, {**env, "resumes": []})
            return
        try:
            recorded = json.loads(self.env_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            recorded = {"unreadable_previous_env": True, "resumes": []}
        changed = [k for k in ENV_VERSION_KEYS if k in recorded and recorded.get(k) != env.get(k)]
        if changed:
            import warnings

            warnings.warn(
                f"resuming {self.path} under different versions of {changed}: earlier folds "
                f"ran with {[recorded.get(k) for k in changed]}, now {[env[k] for k in changed]}",
                RuntimeWarning,
                stacklevel=3,
            )
        recorded.setdefault("resumes", []).append(env)
        atomic_write_json(self.env_path, recorded)

    # -- folds ------------------------------------------------------------------------------------
    def is_done(self, fold: Any) -> bool:
        return self._done_path(fold).exists()

    def completed_folds(self) -> list:
        """Folds with a done marker, as the values given to :meth:`mark_fold_done` (ints stay ints)."""
        return completed_folds(self.path)

    def mark_fold_done(
        self, fold: Any, predictions: pd.DataFrame, history: pd.DataFrame | None = None, *, seconds: float | None = None
    ) -> None:
        """Write the fold's ``predictions.csv`` (and ``history.csv``), then its done marker, atomically.

        ``predictions`` follows :data:`merkit.evaluation.metrics.PREDICTION_COLUMNS` (``fold`` is filled in when
        absent and must otherwise equal ``fold``). Re-marking a fold replaces its files; its old marker
        is removed first so a crash in between leaves it incomplete rather than stale.
        """
        predictions = predictions.copy()
        if "fold" not in predictions.columns:
            predictions["fold"] = [fold] * len(predictions)
        missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
        if missing:
            raise PredictionsError(f"fold {fold!r}: predictions lack column(s) {missing}")
        others = sorted({str(f) for f in predictions["fold"]} - {str(fold)})
        if others:
            raise PredictionsError(f"fold {fold!r}: predictions hold rows of other fold(s) {others}")
        done = self._done_path(fold)
        d = self.fold_dir(fold)
        with contextlib.suppress(FileNotFoundError):
            done.unlink()
        atomic_write_csv(predictions, d / "predictions.csv")
        if history is not None:
            atomic_write_csv(history, d / "history.csv")
        atomic_write_json(
            done,
            {"fold": fold, "n_predictions": len(predictions), "has_history": history is not None, "seconds": seconds},
        )

    def fold_seconds(self) -> dict[str, float | None]:
        """Wall seconds of each completed fold, as recorded in its done marker (None when not recorded)."""
        seconds = {}
        for fold in self.completed_folds():
            try:
                marker = json.loads(self._done_path(fold).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            seconds[str(fold)] = marker.get("seconds")
        return seconds

    def load_predictions(self) -> pd.DataFrame:
        """Predictions of every completed fold, in fold order (empty table if none are complete)."""
        parts = []
        for fold in self.completed_folds():
            part = pd.read_csv(
                self.fold_dir(fold, create=False) / "predictions.csv",
                dtype={"dataset": str, "subject": str, "sample": str, "fold": str},
            )
            part["fold"] = [fold] * len(part)  # CSV would turn a fold "01" into 1: restore the key
            parts.append(part)
        if not parts:
            return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
        return pd.concat(parts, ignore_index=True)

    def load_history(self, fold: Any) -> pd.DataFrame:
        """The fold's ``history.csv`` (FileNotFoundError naming the file if it was never written)."""
        return pd.read_csv(self.fold_dir(fold, create=False) / "history.csv")

    # -- run-level outputs ------------------------------------------------------------------------
    def write_predictions(self, predictions: pd.DataFrame | None = None) -> Path:
        """Write ``predictions.csv`` of the whole run (default: all completed folds)."""
        return atomic_write_csv(self.load_predictions() if predictions is None else predictions, self.predictions_path)

    def write_metrics(self, metrics: dict) -> Path:
        """Write ``metrics.json`` (e.g. :func:`merkit.evaluation.metrics.summarise`) as strict JSON."""
        return atomic_write_json(self.metrics_path, metrics)

    def write_json(self, name: str, obj: Any) -> Path:
        """Write any other JSON record of the run (``<path>/<name>``) atomically."""
        return atomic_write_json(self.path / name, obj)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, fold: Any, obj: Any) -> Path:
        """``torch.save`` the fold's checkpoint atomically."""
        return atomic_torch_save(obj, self.checkpoint_path(fold))

    def load_checkpoint(self, fold: Any, map_location: Any = "cpu", weights_only: bool = True) -> Any:
        """Load the fold's checkpoint; :class:`CheckpointError` naming the file if missing or corrupt."""
        import pickle

        import torch

        path = self.checkpoint_path(fold)
        if not path.exists():
            raise CheckpointError(f"fold {fold!r}: no checkpoint at {path}")
        try:
            return torch.load(path, map_location=map_location, weights_only=weights_only)
        except pickle.UnpicklingError as err:
            if weights_only and "weights_only" in str(err).lower().replace(" ", "_"):
                raise CheckpointError(
                    f"fold {fold!r}: checkpoint {path} holds objects that weights_only loading refuses; "
                    f"save only tensors/state dicts and plain Python values ({err})"
                ) from err
            raise CheckpointError(
                f"fold {fold!r}: checkpoint {path} is corrupt ({err}); delete it and re-run the fold"
            ) from err
        except Exception as err:  # noqa: BLE001 - random bytes make the unpickler raise almost anything
            # (IndexError, KeyError, RuntimeError, EOFError, BadZipFile...): all mean "not a checkpoint"
            raise CheckpointError(
                f"fold {fold!r}: checkpoint {path} is corrupt or truncated "
                f"({type(err).__name__}: {err}); delete it and re-run the fold"
            ) from err

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, completed_folds={len(self.completed_folds())})"
