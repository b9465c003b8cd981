"""The fold-batched trainer (merkit.training.batched.stack) and the "batched"/"auto" executors (merkit.training.runner,
executors).

Equivalence with the sequential trainer is checked two ways, as merkit.training.batched.stack's docstring states:
folds that each train on every clip of the shared batches see exactly the batches ``train.train_fold`` draws,
so per-fold weights (and BatchNorm statistics) must match within 1e-4; folds with their own training sets
share batches differently, so they are checked by giving the same pooled predictions on a separable toy set.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from merkit.config import ModelConfig, ProtocolConfig, RunConfig, TrainConfig
from merkit.evaluation.splits import loso_splits
from merkit.models.registry import _REGISTRY, register_model
from merkit.models.specs import InputSpec
from merkit.training.batched.stack import StackError, check_stackable, plan_fold_batch, train_folds
from merkit.training.fold import predict, train_fold
from merkit.training.job import FoldJob
from merkit.training.runner import run_protocol


class TinyBNNet(nn.Module):
    """conv (no bias: a bias before BatchNorm has an exactly-zero true gradient, and Adam turns the rounding
    noise of a zero gradient into full-size steps, which differ between any two implementations) → BN →
    ReLU → dropout → linear."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = 3
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))  # (b, 4, 4, 4) -> (b, 64)


class Items(Dataset):
    """(x, label) items with a ``labels`` attribute, like the kit's datasets."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        self.x, self.labels = x, labels.numpy()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i])


def toy_set(n: int = 30, separable: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 3, 4, 4, generator=g)
    if separable:
        x = 0.3 * x + 3.0 * nn.functional.one_hot(y, 3).float()[:, :, None, None]  # class c lights channel c
    return x, y


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=8, lr=1e-2, device="cpu", precision="fp32", augment=False, grad_clip=1.0)
    base.update(kw)
    return TrainConfig(**base)


def seeded(seed: int, **kw) -> TinyBNNet:
    torch.manual_seed(seed)
    return TinyBNNet(**kw)


def test_folds_training_on_every_shared_clip_get_the_sequential_weights_and_batchnorm_statistics():
    """The stacked maths through the path the executor runs (shared batches): when every fold of the group trains
    on every clip (members all True), the group's batches are the batches train_fold draws under the same seed,
    so each fold's weights and BatchNorm statistics equal the sequential trainer's, although each fold starts
    from its own weights (25 clips in batches of 8: a ragged last batch)."""
    x, y = toy_set()
    data = Items(x[:25], y[:25])
    seeds = [11, 12, 13]
    c = cfg(optimizer="adamw", schedule="cosine")
    sequential = [train_fold(seeded(s), data, c, seed=5, progress=False, num_classes=3)[0] for s in seeds]
    batched = train_folds(
        [seeded(s) for s in seeds],
        c,
        seeds=seeds,
        num_classes=3,
        shared=data,
        members=np.ones((3, len(data)), dtype=bool),
        group_seed=5,
    )
    for one, (other, history) in zip(sequential, batched):
        a, b = one.state_dict(), other.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-4), key
        assert list(history["epoch"]) == [1, 2, 3] and history["selected"].tolist() == [False, False, True]
    assert not torch.equal(batched[0][0].bn.running_mean, torch.zeros(4))  # the statistics did move
    assert not torch.allclose(batched[0][0].conv.weight, batched[1][0].conv.weight)  # three different models


def test_shared_sampling_gives_the_sequential_pooled_predictions_on_a_separable_set():
    x, y = toy_set(36, separable=True)
    subjects = np.repeat(np.arange(6), 6)
    c = cfg(epochs=20, batch_size=12, lr=2e-2, grad_clip=0.0)
    folds = [(np.flatnonzero(subjects != s), np.flatnonzero(subjects == s)) for s in range(6)]
    seq_preds, bat_preds = [], []
    for s, (train, _test) in enumerate(folds):
        model, _ = train_fold(seeded(s), Items(x[train], y[train]), c, seed=s, progress=False, num_classes=3)
        seq_preds.append(predict(model, Items(x[_test], y[_test]))[1])
    members = np.stack([subjects != s for s in range(6)])
    trained = train_folds(
        [seeded(s) for s in range(6)],
        c,
        seeds=list(range(6)),
        num_classes=3,
        shared=Items(x, y),
        members=members,
        group_seed=5,
    )
    for (model, _), (_train, test) in zip(trained, folds):
        bat_preds.append(predict(model, Items(x[test], y[test]))[1])
    truth = np.concatenate([y[test].numpy() for _, test in folds])
    assert np.array_equal(np.concatenate(seq_preds), truth)
    assert np.array_equal(np.concatenate(bat_preds), truth)


def test_held_out_pixels_leave_their_own_fold_bit_identical_batchnorm_and_dropout_included():
    x, y = toy_set(24)
    subjects = np.repeat(np.arange(4), 6)
    members = np.stack([subjects != s for s in range(4)])
    c = cfg(epochs=3, batch_size=10)

    def run(images: torch.Tensor) -> list[dict]:
        trained = train_folds(
            [seeded(s, dropout=0.5) for s in range(4)],
            c,
            seeds=list(range(4)),
            num_classes=3,
            shared=Items(images, y),
            members=members,
            group_seed=3,
        )
        return [m.state_dict() for m, _ in trained]

    before = run(x)
    changed = x.clone()
    changed[subjects == 0] = 1e6 * torch.rand_like(changed[subjects == 0])  # fold 0's held-out clips
    after = run(changed)
    for key in before[0]:  # fold 0: weights, BN running mean/var, batch counter: bit for bit
        assert torch.equal(before[0][key], after[0][key]), key
    assert not torch.equal(before[1]["conv.weight"], after[1]["conv.weight"])  # fold 1 trains on them


def test_check_stackable_says_why_a_model_cannot_be_stacked():
    class DataDependent(nn.Module):
        num_classes = 3

        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(48, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.head(x.flatten(1))
            if float(out.sum().item()) > 1e9:  # Python control flow on a per-fold value: vmap cannot run it
                out = out * 0
            return out

    reason = check_stackable(DataDependent(), torch.randn(2, 3, 4, 4))
    assert reason is not None and "DataDependent cannot be stacked" in reason
    assert check_stackable(TinyBNNet(), torch.randn(2, 3, 4, 4)) is None
    assert "inner validation" in check_stackable(TinyBNNet(), torch.randn(2, 3, 4, 4), cfg(val_fraction=0.3))


def test_fold_batch_planning_clamps_and_refuses_a_budget_below_one_fold():
    k, why = plan_fold_batch(5, 9, per_fold_bytes=10, budget_bytes=100)
    assert k == 5 and "clamped to 5" in why
    k, why = plan_fold_batch(68, 0, per_fold_bytes=30 * 2**20, budget_bytes=100 * 2**20)
    assert k == 3 and "100 MB" in why
    k, why = plan_fold_batch(68, 0, per_fold_bytes=35 * 2**20 // 10, budget_bytes=128 * 2**20)  # room for 36
    assert k == 34 and "36 folds fit" in why and "2 groups of 34" in why  # even groups, no remainder of 32
    assert plan_fold_batch(10, 0, per_fold_bytes=1, budget_bytes=6)[0] == 5  # 5 + 5, not 6 + 4
    with pytest.raises(StackError, match=r"memory budget of 1 MB is too small for one fold \(30 MB estimated\)"):
        plan_fold_batch(68, 0, per_fold_bytes=30 * 2**20, budget_bytes=2**20)


# ------------------------------------------------------------------------------------------ the runner


@pytest.fixture(scope="module")
def flow_store(tmp_path_factory):
    """SynthME, 4 subjects × 3 clips, with 28×28 (u, v, strain) flow (DIS)."""
    from merkit.data.datasets import build_manifest
    from merkit.data.flow import FlowConfig
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
    return build_store(
        manifest,
        root,
        PreprocessConfig(frames=8, size=16, color="grey"),
        base / "store",
        flow=FlowConfig(method="dis", work_size=32, size=28),
        progress=False,
    )


def flow_config(protocol: str = "loso", **proto) -> RunConfig:
    return RunConfig(
        model=ModelConfig(name="ststnet"),
        train=TrainConfig(epochs=3, batch_size=4, lr=3e-3, device="cpu", precision="fp32", seed=7),
        protocol=ProtocolConfig(name=protocol, **proto),
    )


def test_batched_executor_records_its_choice_and_groups(flow_store, tmp_path, capsys):
    predictions = run_protocol(flow_config(executor="batched"), flow_store, tmp_path / "run", progress=False)
    assert len(predictions) == 12 and set(predictions["fold"]) == {"01", "02", "03", "04"}
    record = json.loads((tmp_path / "run" / "executor.json").read_text())
    assert record["requested"] == "batched" and record["executor"] == "batched"
    assert "as configured" in record["reason"] and record["fold_batch"] == 4
    assert "executor: batched" in capsys.readouterr().out
    history = pd.read_csv(tmp_path / "run" / "folds" / "fold_01" / "history.csv")
    assert history["executor"].iloc[0] == "batched:01..04"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["protocol"]["executor"] == "batched"
    assert (tmp_path / "run" / "metrics.json").exists() and (
        tmp_path / "run" / "folds" / "fold_04" / "checkpoint.pt"
    ).exists()


def test_auto_picks_the_fused_batched_executor_for_ststnet_on_cpu_and_records_why(flow_store, tmp_path):
    run_protocol(flow_config(), flow_store, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "executor.json").read_text())
    assert record["requested"] == "auto" and record["executor"] == "batched"
    assert "fused" in record["reason"] and record["fold_batch"] == 4  # the fused estimate fits every fold
    assert json.loads((tmp_path / "run" / "config.json").read_text())["protocol"]["executor"] == "auto"


def test_one_ststnet_fold_trains_with_the_fused_step_and_an_observer_keeps_the_epoch_loop(flow_store):
    """run_fold (02_train's single split, the per-fold executors) gives an STSTNet on CPU to the fused step as a
    group of one fold; an epoch observer (or an inner validation split) needs train_fold's loop and gets it."""
    from merkit.training.runner import run_fold

    config = flow_config()
    config.model = ModelConfig(name="ststnet", overrides={"dropout": 0.0})  # dropout draws differ between the two
    fold = loso_splits(flow_store.index)[0]
    classes = sorted(flow_store.index["emotion"].unique())  # any 3 names: the weights do not depend on them
    job = FoldJob(config, flow_store, tuple(classes))
    seed, augment = job.seed(fold), config.train.clip_augmentation() or False
    fused = run_fold(config, flow_store, fold, classes)
    observed = run_fold(config, flow_store, fold, classes, on_epoch_end=lambda epoch, snapshot: None)

    ((direct, _),) = train_folds(
        [job.build_model(fold)],
        config.train,
        seeds=[seed],
        num_classes=3,
        shared=job.dataset(job.build_model(fold), np.asarray(fold.train), augment=augment, seed=seed),
        members=np.ones((1, len(fold.train)), dtype=bool),
        group_seed=seed,
    )
    loop_model, _ = train_fold(
        job.build_model(fold),
        job.dataset(job.build_model(fold), np.asarray(fold.train), augment=augment, seed=seed),
        config.train,
        progress=False,
        seed=seed,
        num_classes=3,
    )
    for key, value in direct.state_dict().items():
        assert torch.equal(fused.state_dict[key], value), key
        assert torch.equal(observed.state_dict[key], loop_model.state_dict()[key]), key
    assert len(fused.history) == len(observed.history) == config.train.epochs


def test_auto_keeps_other_flow_models_sequential_on_cpu_and_records_why(flow_store, tmp_path):
    config = flow_config()
    config.model = ModelConfig(name="offapexnet")
    run_protocol(config, flow_store, tmp_path / "run", folds=["01"], progress=False)
    record = json.loads((tmp_path / "run" / "executor.json").read_text())
    assert record["requested"] == "auto" and record["executor"] == "sequential"
    assert "flow model on cpu" in record["reason"]


def test_auto_keeps_clip_models_sequential_on_cpu(flow_store, tmp_path):
    config = RunConfig(
        model=ModelConfig(
            name="meranet_small", overrides=dict(frames=8, size=16, widths=(4, 8, 8), reduction=2, dropout=0.0)
        ),
        train=TrainConfig(epochs=1, batch_size=4, device="cpu", precision="fp32"),
        preprocess={"frames": 8, "size": 16, "color": "grey"},
    )
    run_protocol(config, flow_store, tmp_path / "run", folds=["01"], progress=False)
    record = json.loads((tmp_path / "run" / "executor.json").read_text())
    assert record["executor"] == "sequential" and "clip model on cpu" in record["reason"]


def test_the_progress_file_follows_the_epochs_inside_a_fold_group(flow_store, tmp_path, monkeypatch):
    """While one group of 4 folds trains for 5 epochs, progress.json names the group and its finished epochs
    before any fold is done. Read at every training step of the group: no timing involved."""
    import merkit.training.batched.stack as stack
    from merkit.progress import read_progress

    monkeypatch.delenv("MERKIT_PROGRESS_FILE", raising=False)
    progress_file = tmp_path / "run" / "progress.json"
    seen, real_step = [], stack._FoldStack.train_step

    def observed_step(self, *args):
        record = read_progress(progress_file)
        if record:  # the trial step of the executor's choice runs before the run directory exists
            seen.append(record)
        return real_step(self, *args)

    monkeypatch.setattr(stack._FoldStack, "train_step", observed_step)
    config = flow_config(executor="batched").with_updates({"train.epochs": 5})
    run_protocol(config, flow_store, tmp_path / "run", progress=False)
    groups = [record["group"] for record in seen]
    assert groups and all((g["index"], g["count"], g["folds"], g["epochs"]) == (1, 1, 4, 5) for g in groups)
    assert sorted({g["epoch"] for g in groups}) == [0, 1, 2, 3, 4]  # the file changed with every epoch
    assert all(record["done"] == 0 and record["total"] == 4 for record in seen)
    assert all(record["eta_seconds"] >= 0 for record in seen if record["group"]["epoch"] > 0)
    final = read_progress(progress_file)
    assert final["done"] == 4 and final["group"] is None


def test_each_folds_model_is_built_once(flow_store, tmp_path, monkeypatch):
    """The model of the pre-flight checks is the first fold's own: 4 folds, 4 models, whichever executor."""
    from merkit.models.baselines import STSTNet

    built, real_init = [], STSTNet.__init__

    def counted_init(self, *args, **kwargs):
        built.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(STSTNet, "__init__", counted_init)
    run_protocol(flow_config(executor="batched", fold_batch=2), flow_store, tmp_path / "batched", progress=False)
    assert len(built) == 4
    built.clear()
    run_protocol(flow_config(executor="sequential"), flow_store, tmp_path / "sequential", progress=False)
    assert len(built) == 4


def test_batched_run_killed_after_a_group_resumes_to_the_uninterrupted_predictions(flow_store, tmp_path, monkeypatch):
    import merkit.training.batched.stack

    config = flow_config(executor="batched", fold_batch=2)
    reference = run_protocol(config, flow_store, tmp_path / "whole", progress=False)

    real, calls = merkit.training.batched.stack.train_folds, []

    def dies_on_second_group(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed after the first fold group")
        return real(*args, **kwargs)

    monkeypatch.setattr(merkit.training.batched.stack, "train_folds", dies_on_second_group)
    with pytest.raises(KeyboardInterrupt):
        run_protocol(config, flow_store, tmp_path / "killed", progress=False)
    monkeypatch.undo()
    assert sorted(p.parent.name for p in (tmp_path / "killed" / "folds").glob("*/done.json")) == ["fold_01", "fold_02"]
    resumed = run_protocol(config, flow_store, tmp_path / "killed", progress=False)
    pd.testing.assert_frame_equal(
        resumed.sort_values("sample").reset_index(drop=True), reference.sort_values("sample").reset_index(drop=True)
    )


def test_batched_runs_under_megc2019_and_lodo(flow_store, tmp_path):
    megc = run_protocol(flow_config("megc2019", executor="batched"), flow_store, tmp_path / "megc", progress=False)
    assert set(megc["fold"]) == {"synthme/01", "synthme/02", "synthme/03", "synthme/04"}
    two = copy.copy(flow_store)  # the same store, its four subjects named as two datasets
    index = flow_store.index.copy()
    index["dataset"] = np.where(index["subject"].astype(str).isin(["01", "02"]), "casme2", "samm")
    index.attrs = dict(flow_store.index.attrs)
    two.index = index
    lodo = run_protocol(flow_config("lodo", executor="batched"), two, tmp_path / "lodo", progress=False)
    assert set(lodo["fold"]) == {"casme2", "samm"} and len(lodo) == 12
    assert json.loads((tmp_path / "lodo" / "executor.json").read_text())["fold_batch"] == 2


def test_bad_batched_settings_are_said(flow_store, tmp_path, capsys):
    run_protocol(flow_config(executor="batched", fold_batch=10), flow_store, tmp_path / "clamped", progress=False)
    assert "fold_batch=10 is more than the 4 folds to run: clamped to 4" in capsys.readouterr().out
    big_batch = flow_config(executor="batched", memory_budget_mb=1).with_updates({"train.batch_size": 4096})
    with pytest.raises(StackError, match=r"memory budget of 1 MB is too small for one fold \(\d+ MB estimated\)"):
        run_protocol(big_batch, flow_store, tmp_path / "tiny_budget", progress=False)


class NotStackable(nn.Module):
    """A flow model with data-dependent control flow in forward: vmap cannot run it."""

    def __init__(self, num_classes: int = 3, in_channels: int = 3, size: int = 28) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_spec = InputSpec(kind="flow", channels=in_channels, frames=None, size=size)
        self.head = nn.Linear(in_channels * size * size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(x.flatten(1))
        if float(out.sum().item()) > 1e9:
            out = out * 0
        return out


def test_a_model_that_cannot_be_stacked_falls_back_to_sequential_and_says_why(flow_store, tmp_path):
    register_model("_test_not_stackable", NotStackable, "test only")
    try:
        config = flow_config(executor="batched").with_updates({"model.name": "_test_not_stackable"})
        with pytest.warns(UserWarning, match="falls back to 'sequential': NotStackable cannot be stacked"):
            predictions = run_protocol(config, flow_store, tmp_path / "run", progress=False)
    finally:
        _REGISTRY.pop("_test_not_stackable")
    assert len(predictions) == 12
    record = json.loads((tmp_path / "run" / "executor.json").read_text())
    assert record["executor"] == "sequential" and "cannot be stacked" in record["reason"]


def test_old_config_with_a_sequential_executor_still_loads():
    old = RunConfig().to_dict()
    old["protocol"] = {"name": "loso", "k": 5, "executor": "sequential", "workers": 1, "ray_address": ""}
    loaded = RunConfig.from_dict(old)
    assert loaded.protocol.executor == "sequential" and loaded.protocol.fold_batch == 0
    assert RunConfig().protocol.executor == "auto"
    assert loso_splits  # the splits stay importable beside the runner


# ------------------------------------------------------------------ the wide (one-network) STSTNet step


def ststnets(n: int, **kw) -> list:
    from merkit.models.baselines import STSTNet

    out = []
    for s in range(n):
        torch.manual_seed(s)
        out.append(STSTNet(**kw))
    return out


def flow_toy(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 28, 28, generator=g) * 255, torch.arange(n) % 3  # 0..255 like the authors' input


@pytest.mark.parametrize("mechanism", ["wide", "fused"])
@pytest.mark.parametrize(
    "build",
    [dict(dropout=0.0), dict(dropout=0.0, batch_norm=False, padding=1)],
    ids=["authors_build_no_dropout", "kit_variant"],
)
def test_wide_and_fused_steps_give_the_vmapped_stacks_weights_and_batchnorm_statistics(build, mechanism):
    x, y = flow_toy()
    subjects = np.repeat(np.arange(4), 10)
    members = np.stack([subjects != s for s in range(4)])
    c = cfg(epochs=4, batch_size=16, lr=1e-3, grad_clip=0.0)
    runs = {}
    for name in ("vmap", mechanism):
        trained = train_folds(
            ststnets(4, **build),
            c,
            seeds=list(range(4)),
            num_classes=3,
            shared=Items(x, y),
            members=members,
            group_seed=3,
            mechanism=name,
        )
        runs[name] = [m.state_dict() for m, _ in trained]
    for a, b in zip(runs["vmap"], runs[mechanism]):
        assert a.keys() == b.keys()
        for key in a:  # running_var is in the thousands (0..255 input): compare relatively there
            assert torch.allclose(a[key].float(), b[key].float(), atol=1e-4, rtol=1e-5), key
    if build.get("batch_norm", True):
        assert not torch.equal(runs[mechanism][0]["branches.0.2.running_mean"], torch.zeros(3))


@pytest.mark.parametrize("mechanism", ["wide", "fused"])
def test_wide_and_fused_steps_keep_held_out_pixels_out_of_their_own_fold_bit_for_bit(mechanism):
    x, y = flow_toy(24)
    subjects = np.repeat(np.arange(4), 6)
    members = np.stack([subjects != s for s in range(4)])
    c = cfg(epochs=3, batch_size=10, grad_clip=0.0)

    def run(images: torch.Tensor) -> list[dict]:
        trained = train_folds(
            ststnets(4),
            c,
            seeds=list(range(4)),
            num_classes=3,
            shared=Items(images, y),
            members=members,
            group_seed=3,
            mechanism=mechanism,
        )  # BN and dropout 0.5 on
        return [m.state_dict() for m, _ in trained]

    before = run(x)
    changed = x.clone()
    changed[subjects == 0] = 1e6 * torch.rand_like(changed[subjects == 0])
    after = run(changed)
    for key in before[0]:
        assert torch.equal(before[0][key], after[0][key]), key
    assert not torch.equal(before[1]["branches.0.0.weight"], after[1]["branches.0.0.weight"])


def test_wide_mechanism_is_refused_for_a_model_it_cannot_write_as_one_network():
    x, y = toy_set()
    members = np.ones((2, len(x)), dtype=bool)
    with pytest.raises(StackError, match="TinyBNNet has no wide"):
        train_folds(
            [seeded(0), seeded(1)],
            cfg(epochs=1),
            seeds=[0, 1],
            num_classes=3,
            shared=Items(x, y),
            members=members,
            mechanism="wide",
        )


def test_cached_batches_follow_the_dataloaders_shuffle_exactly():
    from torch.utils.data import DataLoader

    from merkit.training.batched.data import shuffled_batches

    data = Items(*toy_set(23))
    loaders = [
        DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(9)) for _ in range(2)
    ]
    for _epoch in range(3):  # the generator's state carries over epochs in both
        by_loader = [xb for xb, _ in loaders[0]]
        by_index = [data.x[idx] for idx in shuffled_batches(loaders[1])]
        assert len(by_loader) == len(by_index) == 5
        for a, b in zip(by_loader, by_index):
            assert torch.equal(a, b)


def test_fused_step_falls_back_to_the_wide_step_when_a_batchnorm_scale_is_not_positive():
    """max-pool(BN(r)) = BN(max-pool(r)) only for a positive scale: a negative gamma must give the wide result."""
    from torch.func import stack_module_state

    from merkit.training.batched.fused import fused_step_for
    from merkit.training.batched.wide import wide_step_for

    models = ststnets(2, dropout=0.0)
    with torch.no_grad():
        models[1].branches[1][2].weight[0] = -0.5
    params, buffers = stack_module_state(models)
    x, y = flow_toy(12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[0, :3] = False
    opts = {
        "loss": "ce",
        "label_smoothing": 0.0,
        "focal_gamma": 2.0,
        "num_classes": 3,
        "autocast": lambda: torch.autocast("cpu", enabled=False),
        "autocast_dtype": None,
    }
    weight = torch.ones(2, 3)
    fused_losses, fused_logits, _ = fused_step_for(models[0], opts)(params, buffers, x, y, mask, weight)
    wide_losses, wide_logits, _ = wide_step_for(models[0], opts)(params, buffers, x, y, mask, weight)
    assert torch.allclose(fused_logits, wide_logits, atol=1e-4, rtol=1e-4)
    assert torch.allclose(fused_losses, wide_losses, atol=1e-5)


def test_fused_epilogues_compiled_give_the_eager_values_and_gradients():
    from merkit.training.batched.fused import _compiled_epilogues, _ConvStage, _geometry, _keep_mask, _patches

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        compiled = _compiled_epilogues()
    if compiled is None:
        pytest.skip("torch.compile does not work on this machine (no C++ compiler?): the eager epilogues run")
    x, _ = flow_toy(6)
    patches = _patches(x, 2)  # (6, r, 28)
    _rows, n_win, n_zero, n_real = _geometry(30)
    torch.manual_seed(0)
    kernels = (0.01 * torch.randn(28, 32)).requires_grad_()
    keep = _keep_mask((6, n_win * n_win, 32), 0.5)
    upstream = [torch.randn(6, (n_win // 2) ** 2, 32), torch.randn(6, 32), 1e-4 * torch.randn(6, 32)]
    results = []
    for epilogues in (None, compiled):
        kernels.grad = None
        feats, kept, s1, m2 = _ConvStage.apply(patches, kernels, keep, 2, (n_win, n_zero, n_real), True, epilogues)
        outs = (feats, s1, m2)
        sum((o * g).sum() for o, g in zip(outs, upstream)).backward()
        results.append([o.detach() for o in outs] + [kept, kernels.grad.clone()])
    for eager, fast in zip(*results):
        assert torch.allclose(eager, fast, rtol=1e-4, atol=1e-3 * float(eager.abs().max())), (eager - fast).abs().max()


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_fused_step_with_dropout_is_the_model_under_the_same_keep_mask(monkeypatch, compiled):
    """Dropout and the average pool run inside the fused chunks: logits, losses and every gradient are the
    authors' network's (BatchNorm in training mode, dropout with the very same keep mask)."""
    from torch.func import stack_module_state

    import merkit.training.batched.fused as fused

    if compiled and fused._compiled_epilogues() is None:
        pytest.skip("torch.compile does not work on this machine (no C++ compiler?): the eager epilogues run")
    models = ststnets(2)  # the authors' build: BatchNorm and dropout 0.5
    params, buffers = stack_module_state(models)
    x, y = flow_toy(8)
    k, f, n_win = 2, 16, 10
    keep = fused._keep_mask((8, n_win * n_win, k * f), 0.5)
    monkeypatch.setattr(fused, "_keep_mask", lambda shape, rate: keep)
    opts = {"loss": "ce", "label_smoothing": 0.0, "focal_gamma": 2.0, "num_classes": 3, "autocast_dtype": None}
    mask, weight = torch.ones(k, 8, dtype=torch.bool), torch.ones(k, 3)
    step = fused.fused_step_for(models[0], opts, compiled=compiled)
    losses, logits, _ = step(params, buffers, x, y, mask, weight)
    losses.sum().backward()

    for i, model in enumerate(models):
        model.train()
        # (b, w, k·f) -> fold i's (b, w, f) -> (b, 10, 10, f) -> (b, f, 10, 10)
        fold_keep = keep[:, :, i * f : (i + 1) * f].float().view(8, n_win, n_win, f).permute(0, 3, 1, 2)
        branches, start = [], 0
        for branch in model.branches:
            conv, relu, bn, pool = branch[:4]  # the model's own dropout is replaced by the same mask
            out = pool(bn(relu(conv(x))))
            branches.append(out * fold_keep[:, start : start + out.shape[1]] / 0.5)
            start += out.shape[1]
        ref_logits = model.forward_head(model.avgpool(torch.cat(branches, 1)))
        ref_loss = nn.functional.cross_entropy(ref_logits, y)
        ref_loss.backward()
        assert torch.allclose(logits[i], ref_logits.detach(), rtol=1e-4, atol=1e-4)
        assert torch.allclose(losses[i], ref_loss.detach(), rtol=1e-5, atol=1e-6)
        for name, p in model.named_parameters():
            got = params[name].grad[i]
            assert torch.allclose(got, p.grad, rtol=1e-3, atol=1e-4 * float(p.grad.abs().max())), name


def test_fused_dropout_keeps_each_element_with_its_probability_independently():
    from merkit.training.batched.fused import _keep_mask

    torch.manual_seed(0)
    for rate in (0.5, 0.3):
        keep = _keep_mask((200, 50, 100), rate)  # 1e6 draws
        assert keep.dtype == torch.uint8 and set(keep.unique().tolist()) <= {0, 1}
        keep = keep.float()
        assert abs(float(keep.mean()) - (1 - rate)) < 0.003
        flat = keep.flatten() - keep.mean()
        assert abs(float((flat[1:] * flat[:-1]).mean() / flat.var())) < 0.01  # neighbours uncorrelated
    assert not torch.equal(_keep_mask((64,), 0.5), _keep_mask((64,), 0.5))


def test_fused_step_without_a_patch_bank_trains_the_same_weights(monkeypatch):
    """A group too large for the cached patch rows computes them per batch from the images: same result."""
    import merkit.training.batched.fused
    from merkit.data.torch_dataset import FlowDataset
    from merkit.training.batched.data import TensorItems, cache_items

    x, y = flow_toy(24)
    data = FlowDataset((x.permute(0, 2, 3, 1).numpy(), y.numpy()), normalise="none")  # a kit dataset: cached
    assert isinstance(cache_items(data), TensorItems)  # so the first run below trains from the patch bank
    subjects = np.repeat(np.arange(4), 6)
    members = np.stack([subjects != s for s in range(4)])
    c = cfg(epochs=2, batch_size=10, grad_clip=0.0)

    def run() -> list[dict]:
        trained = train_folds(
            ststnets(4),
            c,
            seeds=list(range(4)),
            num_classes=3,
            shared=data,
            members=members,
            group_seed=3,
            mechanism="fused",
        )
        return [m.state_dict() for m, _ in trained]

    banked = run()
    monkeypatch.setattr(merkit.training.batched.fused, "BANK_LIMIT_BYTES", 0)
    unbanked = run()
    for a, b in zip(banked, unbanked):
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_fused_step_in_bf16_keeps_held_out_pixels_out_and_stays_close_to_fp32():
    x, y = flow_toy(24)
    subjects = np.repeat(np.arange(4), 6)
    members = np.stack([subjects != s for s in range(4)])

    def run(images: torch.Tensor, precision: str) -> list:
        c = cfg(epochs=2, batch_size=10, grad_clip=0.0, precision=precision)
        return train_folds(
            ststnets(4),
            c,
            seeds=list(range(4)),
            num_classes=3,
            shared=Items(images, y),
            members=members,
            group_seed=3,
            mechanism="fused",
        )

    before = [m.state_dict() for m, _ in run(x, "bf16")]
    changed = x.clone()
    changed[subjects == 0] = 1e6 * torch.rand_like(changed[subjects == 0])
    after = [m.state_dict() for m, _ in run(changed, "bf16")]
    for key in before[0]:
        assert torch.equal(before[0][key], after[0][key]), key
    losses = {p: np.array([h["loss"].iloc[0] for _, h in run(x, p)]) for p in ("fp32", "bf16")}
    assert np.allclose(losses["fp32"], losses["bf16"], rtol=2e-2)  # first epoch: bf16 GEMM operands only


def test_fused_shared_sampling_gives_the_sequential_pooled_predictions_on_a_separable_flow_set():
    """What executor auto runs for STSTNet on CPU (fused step, shared batches) against train_fold, fold by fold."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(36) % 3
    x = 60 * torch.rand(36, 3, 28, 28, generator=g)  # 0..255-scale flow images; class c lights channel c
    x += 150 * nn.functional.one_hot(y, 3).float()[:, :, None, None]
    subjects = np.repeat(np.arange(6), 6)
    c = cfg(epochs=8, batch_size=12, lr=1e-2, grad_clip=0.0)
    folds = [(np.flatnonzero(subjects != s), np.flatnonzero(subjects == s)) for s in range(6)]
    seq_preds = []
    for s, (train, test) in enumerate(folds):
        model, _ = train_fold(ststnets(s + 1)[s], Items(x[train], y[train]), c, seed=s, progress=False, num_classes=3)
        seq_preds.append(predict(model, Items(x[test], y[test]))[1])
    members = np.stack([subjects != s for s in range(6)])
    trained = train_folds(
        ststnets(6),
        c,
        seeds=list(range(6)),
        num_classes=3,
        shared=Items(x, y),
        members=members,
        group_seed=5,
        mechanism="fused",
    )
    bat_preds = [predict(model, Items(x[test], y[test]))[1] for (model, _), (_, test) in zip(trained, folds)]
    truth = np.concatenate([y[test].numpy() for _, test in folds])
    assert np.array_equal(np.concatenate(seq_preds), truth)
    assert np.array_equal(np.concatenate(bat_preds), truth)
