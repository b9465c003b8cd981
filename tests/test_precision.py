"""precision: auto chooses by the CPU's native bf16 and by the evidence; the choice and its reason are recorded.

Only the capability probe (``cpu_bf16_support``) is replaced, to stand for a CPU with or without native bf16.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from merkit.config import ModelConfig, ProtocolConfig, RunConfig, TrainConfig
from merkit.models import create_model
from merkit.training import precision
from merkit.training.fold import predict, train_fold
from merkit.training.precision import (
    CPU_BF16_CLIP_EVIDENCE,
    CPU_BF16_FUSED_EVIDENCE,
    NATIVE_BF16_FLAGS,
    CpuBf16,
    PrecisionError,
    choose_precision,
    cpu_bf16_support,
    resolve_precision,
)

CPU = torch.device("cpu")
TINY_MODEL = dict(frames=8, size=16, widths=(4, 8, 8), reduction=2, dropout=0.0)
WITH_BF16 = CpuBf16("amx_bf16", "/proc/cpuinfo")
WITHOUT_BF16 = CpuBf16(None, "/proc/cpuinfo")


def probe_says(monkeypatch: pytest.MonkeyPatch, found: CpuBf16) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: found)


def clip_model() -> torch.nn.Module:
    return create_model("meranet_small", **TINY_MODEL)


def test_auto_on_a_cpu_with_native_bf16_follows_the_evidence_for_a_clip_model(monkeypatch):
    probe_says(monkeypatch, WITH_BF16)
    choice = choose_precision("auto", CPU, clip_model())
    assert choice.precision == ("bf16" if CPU_BF16_CLIP_EVIDENCE else "fp32")
    assert choice.cpu_bf16 == "amx_bf16" and "amx_bf16" in choice.reason  # which feature: recorded
    assert "bench_precision" in choice.reason and "interval" in choice.reason
    assert resolve_precision("auto", CPU, clip_model()) is choice.dtype


def test_once_the_evidence_holds_auto_trains_a_clip_model_in_bf16_on_a_native_bf16_cpu_only(monkeypatch):
    monkeypatch.setattr(precision, "CPU_BF16_CLIP_EVIDENCE", True)  # the branch a positive benchmark turns on
    probe_says(monkeypatch, WITH_BF16)
    choice = choose_precision("auto", CPU, clip_model())
    assert choice.precision == "bf16" and choice.dtype is torch.bfloat16 and "bf16 because" in choice.reason
    assert choose_precision("auto", CPU, create_model("offapexnet")).precision == "fp32"
    probe_says(monkeypatch, WITHOUT_BF16)
    assert choose_precision("auto", CPU, clip_model()).precision == "fp32"


def test_auto_on_a_cpu_without_native_bf16_is_fp32_for_every_model(monkeypatch):
    probe_says(monkeypatch, WITHOUT_BF16)
    for model in (clip_model(), create_model("ststnet"), None):
        choice = choose_precision("auto", CPU, model)
        assert choice.precision == "fp32" and choice.dtype is None
        assert "no native bf16" in choice.reason and choice.cpu_bf16 is None


def test_auto_keeps_other_flow_models_and_models_without_an_input_spec_in_fp32(monkeypatch):
    probe_says(monkeypatch, WITH_BF16)
    flow = choose_precision("auto", CPU, create_model("offapexnet"))
    assert flow.precision == "fp32" and "a flow model" in flow.reason and "amx_bf16" in flow.reason
    bare = choose_precision("auto", CPU, torch.nn.Linear(2, 3))
    assert bare.precision == "fp32" and "declares no input" in bare.reason


@pytest.mark.parametrize("name", ["ststnet", "ststnet_kit"])
def test_auto_on_a_cpu_with_native_bf16_follows_the_fused_step_evidence_for_ststnet(monkeypatch, name):
    probe_says(monkeypatch, WITH_BF16)
    choice = choose_precision("auto", CPU, create_model(name))
    assert choice.precision == ("bf16" if CPU_BF16_FUSED_EVIDENCE else "fp32")
    assert "fused step" in choice.reason and "amx_bf16 in /proc/cpuinfo" in choice.reason
    assert "bench_precision" in choice.reason and "interval" in choice.reason
    monkeypatch.setattr(precision, "CPU_BF16_FUSED_EVIDENCE", False)  # without the evidence: fp32, said why
    refused = choose_precision("auto", CPU, create_model(name))
    assert refused.precision == "fp32" and "fp32 because" in refused.reason
    probe_says(monkeypatch, WITHOUT_BF16)
    monkeypatch.setattr(precision, "CPU_BF16_FUSED_EVIDENCE", True)
    assert choose_precision("auto", CPU, create_model(name)).precision == "fp32"


def test_explicit_precisions_are_kept_and_unknown_ones_refused(monkeypatch):
    probe_says(monkeypatch, WITH_BF16)
    assert choose_precision("fp32", CPU, clip_model()).dtype is None
    assert choose_precision("bf16", CPU, create_model("ststnet")).dtype is torch.bfloat16
    with pytest.raises(PrecisionError, match="unknown precision 'fp8'"):
        choose_precision("fp8", CPU)
    with pytest.raises(PrecisionError, match="mps"):
        choose_precision("bf16", torch.device("mps"))


def test_bf16_on_a_cpu_without_native_bf16_warns_once_and_runs(monkeypatch):
    probe_says(monkeypatch, WITHOUT_BF16)
    monkeypatch.setattr(precision, "_warned_slow_bf16", False)  # a fresh process: nothing warned yet
    torch.manual_seed(0)
    x = torch.rand(6, 3, 28, 28)  # (b, c, h, w): STSTNet's flow images
    data = torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 2, 0, 1, 2]))
    cfg = TrainConfig(epochs=2, batch_size=3, device="cpu", precision="bf16", augment=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, history = train_fold(create_model("ststnet"), data, cfg, progress=False)
        probs, _ = predict(model, data, batch_size=3, precision="bf16")
    slow = [w for w in caught if "without native bf16" in str(w.message)]
    assert len(slow) == 1, [str(w.message) for w in caught]  # once, not once per fold, epoch or batch
    assert "slower than fp32" in str(slow[0].message) and "running in bf16 as asked" in str(slow[0].message)
    assert len(history) == 2 and torch.isfinite(torch.tensor(history["loss"].to_numpy())).all()
    assert probs.shape == (6, 3)


def test_the_probe_reports_a_native_feature_of_this_cpu_or_none():
    found = cpu_bf16_support()
    assert found.feature is None or found.feature in NATIVE_BF16_FLAGS
    cpuinfo = Path("/proc/cpuinfo")
    if found.source == "/proc/cpuinfo":
        words = set(cpuinfo.read_text(errors="replace").split())
        assert found.native == any(flag in words for flag in NATIVE_BF16_FLAGS)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """SynthME, 4 subjects × 3 clips, grey 8×16×16 clips."""
    from merkit.data.datasets import build_manifest
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import build_store
    from merkit.data.synthetic import SynthMEConfig, generate_synthme

    base = tmp_path_factory.mktemp("synthme")
    root = generate_synthme(
        base / "data",
        SynthMEConfig(n_subjects=4, clips_per_subject=3, n_frames=8, size=32, video_subjects=()),
        progress=False,
    )
    manifest = build_manifest("synthme", root, "synthme_3class")
    config = PreprocessConfig(frames=8, size=16, color="grey")
    return build_store(manifest, root, config, base / "store", progress=False)


@pytest.mark.parametrize("found", [WITH_BF16, WITHOUT_BF16], ids=["native_bf16", "no_bf16"])
def test_a_run_records_its_precision_and_why_in_executor_json(tiny_store, tmp_path, monkeypatch, capsys, found):
    probe_says(monkeypatch, found)
    config = RunConfig(
        model=ModelConfig(name="meranet_small", overrides=TINY_MODEL),
        train=TrainConfig(epochs=1, batch_size=4, device="cpu", precision="auto", augment=False),
        protocol=ProtocolConfig(name="loso", executor="sequential"),
        preprocess={"frames": 8, "size": 16, "color": "grey"},
    )
    run_protocol_once(config, tiny_store, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "executor.json").read_text())["precision"]
    expected = "bf16" if found.native and CPU_BF16_CLIP_EVIDENCE else "fp32"
    assert record["requested"] == "auto" and record["precision"] == expected
    assert record["cpu_bf16"] == found.feature and record["device"] == "cpu"
    assert ("amx_bf16 in /proc/cpuinfo" in record["reason"]) == found.native  # the feature found, and where
    assert ("no native bf16" in record["reason"]) != found.native
    assert f"precision: {expected} (auto:" in capsys.readouterr().out


def run_protocol_once(config: RunConfig, store, run_dir: Path) -> None:
    from merkit.training.runner import run_protocol

    run_protocol(config, store, run_dir, folds=["01"], progress=False, save_checkpoints=False)


# ------------------------------------------------------------------------------------- the GPU path

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.cuda
@needs_cuda
def test_auto_picks_cuda_and_bf16_where_the_device_supports_it():
    from merkit.training.fold import resolve_device

    device = resolve_device("auto")
    assert device.type == "cuda"
    choice = choose_precision("auto", device, clip_model())
    assert choice.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32") and "CUDA" in choice.reason


@pytest.mark.cuda
@needs_cuda
def test_a_run_with_device_auto_trains_on_cuda_and_records_it(tiny_store, tmp_path):
    config = RunConfig(
        model=ModelConfig(name="meranet_small", overrides=TINY_MODEL),
        train=TrainConfig(epochs=1, batch_size=4, device="auto", precision="auto", augment=False),
        protocol=ProtocolConfig(name="loso", executor="sequential"),
        preprocess={"frames": 8, "size": 16, "color": "grey"},
    )
    run_protocol_once(config, tiny_store, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "executor.json").read_text())["precision"]
    assert record["device"].startswith("cuda")
    history = (tmp_path / "run" / "folds" / "fold_01" / "history.csv").read_text()
    assert "cuda" in history


def test_gpu_check_skips_every_cuda_part_and_says_so_without_a_device():
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: benchmarks/gpu_check.py would run its parts for real")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for part in ("cuda tests", "meranet loso", "bench_folds", "bench_precision"):
        assert f"[{part}] skipped: no CUDA device" in done.stdout
    assert "the GPU figures stay unmeasured" in done.stdout
