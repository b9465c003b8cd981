"""train.py: one fold with an in-memory dataset and a toy 3-D net (fast, exact checks)."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from merkit.config import ConfigError, TrainConfig
from merkit.training.fold import (
    FocalLoss,
    class_weights,
    inner_validation_split,
    predict,
    resolve_device,
    train_fold,
)
from merkit.training.precision import resolve_precision


class ToyClips(Dataset):
    """Clips (1, 4, 6, 6) whose class is written as a bright patch position: learnable in a few epochs."""

    def __init__(self, n: int, num_classes: int = 3, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.labels = np.arange(n) % num_classes
        x = rng.normal(0, 0.3, size=(n, 1, 4, 6, 6)).astype(np.float32)
        for i, c in enumerate(self.labels):
            x[i, 0, :, 2 * c : 2 * c + 2, :] += 2.0
        self.x = torch.from_numpy(x)
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.labels[i])


class ToyNet(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv3d(1, 4, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d((1, 3, 1))
        self.head = nn.Linear(4 * 3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pool(self.act(self.conv(x)))  # (b, 4, 1, 3, 1)
        return self.head(z.flatten(1))  # (b, 4, 1, 3, 1) -> (b, 12) -> (b, k)


def cfg(**overrides) -> TrainConfig:
    base = dict(
        epochs=6,
        batch_size=8,
        lr=0.05,
        weight_decay=0.0,
        optimizer="adamw",
        schedule="cosine",
        grad_clip=1.0,
        loss="ce",
        class_weighted=True,
        precision="fp32",
        device="cpu",
        seed=0,
        deterministic=True,
        num_workers=0,
        select_best=False,
    )
    base.update(overrides)
    if base["select_best"]:
        base.setdefault("val_fraction", 0.25)  # TrainConfig asks for it; train_fold validates on the val_ds given
    return TrainConfig(**base)


def fresh_net(seed: int = 0) -> ToyNet:
    torch.manual_seed(seed)
    return ToyNet()


def test_resolve_device_auto_and_explicit():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu-please")


def test_resolve_precision_auto_is_fp32_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("fp8", cpu)


def test_class_weights_inverse_frequency_and_absent_class():
    assert torch.allclose(class_weights([0, 1, 2, 0, 1, 2], 3), torch.ones(3))
    # counts 4, 2, 0 -> n / (k_present * n_c) = 6 / (2*4), 6 / (2*2), absent -> 0
    assert torch.allclose(class_weights([0, 0, 0, 0, 1, 1], 3), torch.tensor([0.75, 1.5, 0.0]))


def test_focal_loss_with_gamma_zero_is_weighted_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(7, 3), torch.tensor([0, 1, 2, 2, 1, 0, 0])
    weight = torch.tensor([0.5, 1.0, 2.0])
    expected = nn.CrossEntropyLoss(weight=weight)(logits, target)
    assert torch.allclose(FocalLoss(gamma=0.0, weight=weight)(logits, target), expected, atol=1e-6)
    # gamma > 0 down-weights easy examples, so the loss can only get smaller
    assert FocalLoss(gamma=2.0, weight=weight)(logits, target) < expected


def test_train_fold_learns_and_records_history():
    ds = ToyClips(24)
    model, history = train_fold(fresh_net(), ds, cfg(), progress=False)
    assert list(history["epoch"]) == list(range(1, 7))
    assert {"loss", "train_acc", "lr", "seconds", "selected"} <= set(history.columns)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert history["selected"].tolist() == [False] * 5 + [True]
    assert ds.epochs_seen == [1, 2, 3, 4, 5, 6]
    # cosine schedule: lr recorded at the start of each epoch decreases from cfg.lr
    assert history["lr"].iloc[0] == pytest.approx(0.05)
    assert history["lr"].is_monotonic_decreasing
    probs, preds = predict(model, ToyClips(12, seed=1))
    assert probs.shape == (12, 3) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (preds == ToyClips(12, seed=1).labels).mean() >= 0.9


def test_same_seed_same_weights_and_other_seed_differs():
    ds = ToyClips(16)
    a, _ = train_fold(fresh_net(), ds, cfg(epochs=2), progress=False)
    b, _ = train_fold(fresh_net(), ds, cfg(epochs=2), progress=False)
    c, _ = train_fold(fresh_net(), ds, cfg(epochs=2), progress=False, seed=1)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))


def test_step_schedule_with_sgd():
    _, history = train_fold(
        fresh_net(),
        ToyClips(8),
        cfg(epochs=4, optimizer="sgd", schedule="step", step_size=2, step_gamma=0.5),
        progress=False,
    )
    assert history["lr"].tolist() == pytest.approx([0.05, 0.05, 0.025, 0.025])


def test_grad_clip_bounds_the_update():
    def first_step_change(clip: float) -> float:
        net = fresh_net()
        before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        train_fold(
            net,
            ToyClips(8),
            cfg(epochs=1, batch_size=8, optimizer="sgd", schedule="none", lr=1.0, grad_clip=clip),
            progress=False,
        )
        after = torch.cat([p.detach().flatten() for p in net.parameters()])
        return float((after - before).norm())

    # SGD with Nesterov momentum 0.9: the first update is lr * 1.9 * g, and ||g|| <= clip after clipping
    assert first_step_change(1e-3) <= 1.9e-3 + 1e-6
    assert first_step_change(0.0) > 1e-2


def test_bf16_autocast_on_cpu_trains():
    model, history = train_fold(fresh_net(), ToyClips(8), cfg(epochs=2, precision="bf16"), progress=False)
    assert np.isfinite(history["loss"]).all()
    probs, _ = predict(model, ToyClips(4), precision="bf16")
    assert np.isfinite(probs).all()


def test_predict_leaves_weights_and_mode_alone():
    net = fresh_net()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    predict(net, ToyClips(5))
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_train_fold_api_has_no_test_set_argument():
    params = set(inspect.signature(train_fold).parameters)
    # on_epoch_end observes a copy of the model after each epoch; it takes no data and cannot pick the weights
    # returned (tests/test_teach.py::test_the_epoch_observer_sees_a_copy_and_does_not_change_training)
    assert params == {"model", "train_ds", "cfg", "val_ds", "progress", "seed", "num_classes", "on_epoch_end"}


def test_select_best_restores_the_best_inner_validation_epoch():
    train, val = ToyClips(12, seed=0), ToyClips(9, seed=3)
    model, history = train_fold(
        fresh_net(), train, cfg(epochs=5, lr=0.02, select_best=True), val_ds=val, progress=False
    )
    assert {"val_loss", "val_acc", "val_uf1", "val_uar"} <= set(history.columns)
    chosen = history.loc[history["selected"]]
    assert len(chosen) == 1
    assert int(chosen["epoch"].iloc[0]) == int(history["epoch"].iloc[history["val_uf1"].to_numpy().argmax()])
    _, preds = predict(model, val)
    assert (preds == val.labels).mean() == pytest.approx(float(chosen["val_acc"].iloc[0]))


def test_inner_validation_split_holds_out_whole_training_subjects():
    rows = pd.DataFrame(
        {
            "dataset": ["a"] * 6 + ["b"] * 6,
            "subject": ["01", "01", "02", "02", "03", "03"] * 2,
            "sample": [f"s{i}" for i in range(12)],
        }
    )
    tr, va = inner_validation_split(rows, 0.34, seed=7)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(12))
    key = rows["dataset"] + "/" + rows["subject"]
    assert set(key.iloc[tr]).isdisjoint(set(key.iloc[va]))
    assert key.iloc[va].nunique() == 2  # round(0.34 * 6 subjects)
    tr2, va2 = inner_validation_split(rows, 0.34, seed=7)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    with pytest.raises(ValueError, match="at least 2 training subjects"):
        inner_validation_split(rows.iloc[:2], 0.5, seed=0)


class ToyFlowImages(Dataset):
    """(u, v, strain) images (3, 28, 28) for the 2D flow models; labels cycle over three classes."""

    def __init__(self, n: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 28, 28, generator=generator)
        self.y = [i % 3 for i in range(n)]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.y[i]


def test_bf16_on_cpu_trains_a_2d_flow_model():
    # channels_last_3d applies to clip models only: a 2D model's 4-D weights cannot take it.
    from merkit.models import create_model

    model = create_model("ststnet", num_classes=3)
    model, history = train_fold(model, ToyFlowImages(6), cfg(epochs=1, precision="bf16"), progress=False)
    assert np.isfinite(history["loss"]).all()
    probs, _ = predict(model, ToyFlowImages(3), precision="bf16")
    assert probs.shape == (3, 3) and np.isfinite(probs).all()


def test_train_takes_a_train_config_and_a_mapping_takes_its_defaults():
    import merkit.training.fold
    from merkit.training.fold import as_train_config

    given = TrainConfig(epochs=2)
    assert as_train_config(given) is given
    assert as_train_config({"epochs": 3, "lr": 0.1}) == TrainConfig(epochs=3, lr=0.1)
    assert as_train_config({}).epochs == TrainConfig().epochs == 30  # one default, TrainConfig's
    assert as_train_config(None) == TrainConfig()
    with pytest.raises(ConfigError, match=r"'train.epochz' \(did you mean 'train.epochs'\?\)"):
        as_train_config({"epochz": 3})
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        train_fold(fresh_net(), ToyClips(4), {"epochs": 0, "device": "cpu"}, progress=False)
    with pytest.raises(TypeError, match="TrainConfig or a mapping"):
        as_train_config(object())
    assert not hasattr(merkit.training.fold, "_get")
