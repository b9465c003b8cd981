"""Which arithmetic a run trains in: fp32, or bf16 autocast, chosen by ``train.precision`` and by evidence.

Public API
----------
- ``cpu_bf16_support()``: the capability probe, whether this CPU computes bf16 natively and which feature says so.
- ``choose_precision(precision, device, model=None) -> PrecisionChoice``: the precision a run uses and why
  (the runner writes ``PrecisionChoice.record()`` into the run directory's ``executor.json``).
- ``resolve_precision(precision, device, model=None)``: the autocast dtype of that choice (``None`` for fp32).

``precision``
-------------
- ``"fp32"``: plain fp32.
- ``"bf16"``: autocast to bfloat16 on CPU or CUDA; on CPU a clip model and its batches also take
  ``torch.channels_last_3d`` (:meth:`merkit.data.inputs.InputAdapter.memory_format`). On a CPU without native bf16
  (no AMX, no AVX512-BF16, no Arm BF16) the bf16 kernels are emulated and usually slower than fp32; the kit
  warns once per process and runs as asked.
- ``"auto"`` (the default):
  - CUDA: bf16 where the GPU supports it (``torch.cuda.is_bf16_supported()``), else fp32.
  - CPU: bf16 for a 3D clip model (``input_spec.kind == "clip"``) when the CPU has native bf16 AND
    :data:`CPU_BF16_CLIP_EVIDENCE` holds; bf16 for an STSTNet (a model the fused fold-batched step trains,
    :func:`merkit.training.batched.wide.ststnet_layout`) when the CPU has native bf16 AND
    :data:`CPU_BF16_FUSED_EVIDENCE` holds: the fused step's GEMMs then take bf16 operands (fp32 sums and
    fp32 everywhere else); fp32 otherwise (other flow models, models that declare no input, CPUs without
    native bf16). ASSUMPTION: the clip evidence was measured on two MERANet sizes; other clip models (STCNN,
    the 3D ResNet) are taken to behave alike. The STSTNet evidence was measured with the fused step; an
    STSTNet trained by the eager per-fold loop (an inner validation split, an epoch observer) runs under bf16
    autocast there, which was not measured separately.
  - MPS: fp32 (bf16 autocast is not supported there by this kit).

The evidence is what ``benchmarks/bench_precision.py`` measures: for clip models on the default SynthME, for
STSTNet on a generated set of the MEGC2019 composite's shape, the seed-mean pooled LOSO UF1 under bf16 against
fp32's bootstrap interval (3 training seeds, the same folds), the speed per step and whether bf16 training
repeats bit for bit; the tables and the decision are in docs/performance.md (:data:`CPU_BF16_CLIP_VERDICT` and
:data:`CPU_BF16_FUSED_VERDICT` say them in one line each). bf16 changes the gradients, so the kit does not
choose it on the strength of speed alone.
"""

from __future__ import annotations

import functools
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from merkit.errors import MerkitValueError

__all__ = [
    "CPU_BF16_CLIP_EVIDENCE",
    "CPU_BF16_CLIP_VERDICT",
    "CPU_BF16_FUSED_EVIDENCE",
    "CPU_BF16_FUSED_VERDICT",
    "PRECISIONS",
    "CpuBf16",
    "PrecisionChoice",
    "PrecisionError",
    "choose_precision",
    "cpu_bf16_support",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16")

#: Whether the evidence lets ``auto`` pick bf16 for clip models on a CPU with native bf16: bf16 autocast kept
#: their LOSO UF1 inside fp32's bootstrap interval on the default SynthME (benchmarks/bench_precision.py; the
#: table is in docs/performance.md), and nothing else measured speaks against it.
CPU_BF16_CLIP_EVIDENCE = False
#: That evidence in one line: it goes into the reason every run records.
CPU_BF16_CLIP_VERDICT = (
    "bf16 kept meranet_small's LOSO UF1 inside fp32's bootstrap interval, but MERANet's was not measured "
    "and bf16 gradients on this kit's CPU path do not repeat bit for bit (identical passes differ)"
)

#: Whether the evidence lets ``auto`` pick bf16 for STSTNet (the fused step's GEMM operands) on a CPU with native
#: bf16: its 68-fold LOSO UF1 under bf16 stayed inside fp32's bootstrap interval over 3 training seeds, and bf16
#: training repeats bit for bit (benchmarks/bench_precision.py --models ststnet; the table is in docs/performance.md).
CPU_BF16_FUSED_EVIDENCE = True
#: That evidence in one line: it goes into the reason every run records.
CPU_BF16_FUSED_VERDICT = (
    "with them STSTNet's 68-fold LOSO UF1 stayed inside fp32's bootstrap interval over 3 training seeds on a "
    "generated set of the MEGC2019 composite's shape, and its bf16 training repeats bit for bit"
)

#: CPU feature flags that mean native bf16 arithmetic, best first: Intel AMX tiles, AVX512-BF16 (x86, as Linux
#: names them in /proc/cpuinfo), the Armv8.6 BF16 extension (aarch64 ``Features``).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


class PrecisionError(MerkitValueError):
    """A ``train.precision`` the kit does not know, or one the device cannot run."""


@dataclass(frozen=True)
class CpuBf16:
    """What the capability probe found: ``feature`` is the native bf16 feature (``"amx_bf16"``,
    ``"avx512_bf16"``, ``"bf16"``) or None, ``source`` where it was read."""

    feature: str | None
    source: str

    @property
    def native(self) -> bool:
        return self.feature is not None


@functools.lru_cache(maxsize=1)
def cpu_bf16_support() -> CpuBf16:
    """The capability probe: does this CPU compute bf16 natively, and which feature says so.

    Linux: the flags of /proc/cpuinfo (``flags`` on x86, ``Features`` on aarch64). Elsewhere: torch's own CPU
    checks (``torch.cpu._is_amx_tile_supported``, ``torch.cpu._is_avx512_bf16_supported``) when this torch has
    them. Read once per process.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags: set[str] = set()
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags.update(value.split())
        feature = next((f for f in NATIVE_BF16_FLAGS if f in flags), None)
        return CpuBf16(feature, "/proc/cpuinfo")
    checks = (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    for feature, name in checks:
        check = getattr(torch.cpu, name, None)
        if check is not None and check():
            return CpuBf16(feature, f"torch.cpu.{name}")
    return CpuBf16(None, f"torch.cpu ({platform.machine() or 'unknown machine'})")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in (``"fp32"`` or ``"bf16"``), what was asked for, and why."""

    requested: str
    precision: str
    reason: str
    device: str
    cpu_bf16: str | None = None  # the CPU's native bf16 feature (None: none, or not a CPU run)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, ``None`` for plain fp32."""
        return torch.bfloat16 if self.precision == "bf16" else None

    def record(self) -> dict:
        """JSON-ready, for the run directory."""
        return {
            "requested": self.requested,
            "precision": self.precision,
            "reason": self.reason,
            "device": self.device,
            "cpu_bf16": self.cpu_bf16,
        }


_warned_slow_bf16 = False  # the slow-bf16 warning is given once per process, not once per fold or batch


def choose_precision(precision: str, device: torch.device, model: Any = None) -> PrecisionChoice:
    """The precision ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``) resolves to on ``device`` for ``model``.

    ``model`` is read only for its ``input_spec.kind`` (``"auto"`` on CPU picks bf16 only for clip models);
    ``None`` counts as a model of unknown input. See the module docstring for the rules.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}: use 'auto', 'fp32' or 'bf16'")
    kind = getattr(getattr(model, "input_spec", None), "kind", None)
    where = device.type
    if precision == "fp32":
        return PrecisionChoice(precision, "fp32", "as configured", str(device))
    if where == "mps":
        if precision == "bf16":
            raise PrecisionError("precision='bf16' is not supported on mps here; use 'fp32' or 'auto'")
        return PrecisionChoice(precision, "fp32", "auto: mps trains in fp32 here", str(device))
    if where == "cuda":
        if precision == "bf16":
            return PrecisionChoice(precision, "bf16", "as configured", str(device))
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice(precision, "bf16", "auto: this CUDA device supports bf16", str(device))
        return PrecisionChoice(precision, "fp32", "auto: this CUDA device does not support bf16", str(device))
    probe = cpu_bf16_support()
    if precision == "bf16":
        if not probe.native:
            _warn_slow_bf16(probe)
        return PrecisionChoice(precision, "bf16", "as configured", str(device), probe.feature)
    if not probe.native:
        why = f"auto: this CPU has no native bf16 (none of {', '.join(NATIVE_BF16_FLAGS)} in {probe.source})"
        return PrecisionChoice(precision, "fp32", why, str(device), None)
    has = f"native bf16: {probe.feature} in {probe.source}"
    if _has_fused_form(model):
        evidence = f"{CPU_BF16_FUSED_VERDICT} (benchmarks/bench_precision.py, docs/performance.md)"
        what = f"auto: {type(model).__name__} on CPU, trained by the fused step ({has})"
        if not CPU_BF16_FUSED_EVIDENCE:
            return PrecisionChoice(precision, "fp32", f"{what}; fp32 because {evidence}", str(device), probe.feature)
        why = f"{what}; bf16 GEMM operands because {evidence}"
        return PrecisionChoice(precision, "bf16", why, str(device), probe.feature)
    if kind != "clip":
        what = f"a {kind} model" if kind else "a model that declares no input"
        why = f"auto: {what} on CPU ({has}); bf16 is chosen only for 3D clip models and STSTNet"
        return PrecisionChoice(precision, "fp32", why, str(device), probe.feature)
    evidence = f"{CPU_BF16_CLIP_VERDICT} (benchmarks/bench_precision.py, docs/performance.md)"
    if not CPU_BF16_CLIP_EVIDENCE:
        why = f"auto: a clip model on CPU ({has}); fp32 because {evidence}"
        return PrecisionChoice(precision, "fp32", why, str(device), probe.feature)
    why = f"auto: a clip model on CPU ({has}); bf16 because {evidence}"
    return PrecisionChoice(precision, "bf16", why, str(device), probe.feature)


def _has_fused_form(model: Any) -> bool:
    """Whether ``model`` is an STSTNet as the kit builds it (the fused fold-batched step trains it on CPU)."""
    if model is None:
        return False
    from merkit.training.batched.wide import ststnet_layout  # here: the batched steps import this module

    return ststnet_layout(model) is not None


def resolve_precision(precision: str, device: torch.device, model: Any = None) -> torch.dtype | None:
    """The autocast dtype of :func:`choose_precision` (``None`` means plain fp32)."""
    return choose_precision(precision, device, model).dtype


def _warn_slow_bf16(probe: CpuBf16) -> None:
    global _warned_slow_bf16
    if _warned_slow_bf16:
        return
    _warned_slow_bf16 = True
    warnings.warn(
        f"precision='bf16' on a CPU without native bf16 (none of {', '.join(NATIVE_BF16_FLAGS)} in {probe.source}): "
        "bf16 is emulated there and usually slower than fp32; running in bf16 as asked",
        UserWarning,
        stacklevel=3,
    )
