"""Localisation scores with known answers (rank AUC, mass above median, pointing), per attention module, bad inputs,
and the guarantee behind them: training never reads the truth masks the scores use."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from merkit import explain
from merkit.models import create_model
from merkit.models.meranet import ATTENTION_KINDS

TINY = dict(frames=8, size=16, widths=(4, 8, 8), reduction=2, dropout=0.0)


def square_mask(batch: int = 2, frames: int = 4, size: int = 16, side: int = 4) -> np.ndarray:
    """(b, t, h, w) masks, one side×side square per clip, placed differently in each."""
    masks = np.zeros((batch, frames, size, size), dtype=bool)
    for k in range(batch):
        masks[k, :, 2 + 3 * k : 2 + 3 * k + side, 5 : 5 + side] = True
    return masks


# ---------------------------------------------------------------- known answers


def test_a_map_equal_to_the_mask_has_auc_one_and_the_inverted_mask_auc_zero():
    masks = square_mask()
    exact = explain.region_scores(masks.astype(float), masks)
    inverted = explain.region_scores(1.0 - masks, masks)
    assert exact["auc"].tolist() == [1.0, 1.0]
    assert inverted["auc"].tolist() == [0.0, 0.0]
    assert exact["pointing_hit"].all() and not inverted["pointing_hit"].any()
    assert np.allclose(exact["mass_above_median"], 1.0)
    assert inverted["mass_above_median"].isna().all()  # the map's median is its maximum: nothing lies above it


def test_a_constant_map_has_auc_one_half_and_points_nowhere():
    masks = square_mask()
    scores = explain.region_scores(np.full(masks.shape, 0.7), masks)
    assert scores["auc"].tolist() == [0.5, 0.5]
    assert not scores["pointing_hit"].any()
    assert np.allclose(scores["mass_in_region"], scores["region_fraction"])


def test_a_gate_of_0_6_with_0_9_in_the_region_ranks_it_first_while_its_mass_share_stays_near_chance():
    masks = square_mask()
    gate = np.where(masks, 0.9, 0.6)
    scores = explain.region_scores(gate, masks)
    chance = scores["region_fraction"].to_numpy()
    assert scores["auc"].tolist() == [1.0, 1.0]
    assert scores["pointing_hit"].all()
    assert np.allclose(scores["mass_above_median"], 1.0)
    # The case that misled: mass in region 0.9·f / (0.9·f + 0.6·(1 - f)), barely above the region's share f.
    assert np.allclose(scores["mass_in_region"], 0.9 * chance / (0.9 * chance + 0.6 * (1 - chance)))
    assert (scores["mass_in_region"] < 1.6 * chance).all()


def test_auc_is_the_share_of_inside_outside_pairs_ranked_right_with_ties_one_half():
    rng = np.random.default_rng(0)
    values = rng.integers(0, 4, size=(1, 40)).astype(float)  # many ties
    inside = rng.random((1, 40)) < 0.3
    a, b = values[0][inside[0]], values[0][~inside[0]]
    by_pairs = ((a[:, None] > b[None]).sum() + 0.5 * (a[:, None] == b[None]).sum()) / (a.size * b.size)
    assert np.isclose(explain.rank_auc(values, inside)[0], by_pairs)
    assert np.isnan(explain.rank_auc(values, np.zeros_like(inside))[0])  # no region: undefined


def test_auc_ignores_offset_and_scale_and_pointing_tolerance_is_stated():
    masks = square_mask(batch=1)
    ramp = np.linspace(0, 1, masks.size).reshape(masks.shape) + 2.0 * masks
    plain = explain.region_scores(ramp, masks)
    shifted = explain.region_scores(5.0 + 3.0 * ramp, masks)
    assert np.isclose(plain["auc"][0], shifted["auc"][0])
    near = np.zeros(masks.shape)
    near[0, :, 7, 5] = 1.0  # one row below the square (rows 2..5)
    assert not explain.region_scores(near, masks)["pointing_hit"][0]
    tolerant = explain.region_scores(near, masks, tolerance=2)
    assert tolerant["pointing_hit"][0] and tolerant["pointing_tolerance"][0] == 2


def test_frames_restrict_the_scored_frames():
    masks = square_mask(batch=1, frames=4)
    maps = np.zeros(masks.shape)
    maps[0, 2] = masks[0, 2]  # only frame 2 knows the region; the others are flat
    assert explain.region_scores(maps, masks, frames=[2])["auc"][0] == 1.0
    assert 0.5 < explain.region_scores(maps, masks)["auc"][0] < 1.0
    with pytest.raises(explain.ExplainError, match="select none"):
        explain.region_scores(maps, masks, frames=slice(4, 4))


def test_random_maps_score_chance_on_every_score():
    masks = square_mask(batch=3, frames=2)[:, 0]  # (b, h, w)
    chance = explain.random_baseline(masks, n_frames=2, draws=16)
    assert np.allclose(chance["auc"], 0.5, atol=0.05)
    assert np.allclose(chance["mass_in_region"], chance["region_fraction"], atol=0.02)


def test_bootstrap_interval_brackets_the_mean_and_interval_table_names_the_columns():
    mean, low, high = explain.bootstrap_interval([0.2, 0.4, 0.6, 0.8, 1.0], n_boot=500)
    assert mean == pytest.approx(0.6) and low < mean < high
    assert np.isnan(explain.bootstrap_interval([np.nan])[0])
    table = pd.DataFrame(
        {
            "module": ["0", "0", "1", "1"],
            "clip": [0, 1, 0, 1],
            "auc": [1.0, 0.8, 0.5, 0.5],
            "pointing_hit": [1, 0, 0, 0],
        }
    )
    summary = explain.interval_table(table, columns=("auc", "pointing_hit"), n_boot=200)
    assert list(summary.columns) == [
        "module",
        "auc",
        "auc_lo",
        "auc_hi",
        "pointing",
        "pointing_lo",
        "pointing_hi",
        "n_clips",
    ]
    assert summary["auc"].tolist() == pytest.approx([0.9, 0.5]) and summary["n_clips"].tolist() == [2, 2]


# ---------------------------------------------------------------- per module, every MERANet variant

DESIGNS = [
    {},
    {"attention_scale": "residual"},
    {"st_source": "input"},
    {"st_normalise": "softmax", "st_temperature": 0.5},
]


@pytest.mark.parametrize("design", DESIGNS, ids=["cbam", "residual", "input", "softmax"])
@pytest.mark.parametrize("attention", ["both", "spatiotemporal"])
def test_every_meranet_variant_with_spatiotemporal_attention_has_per_module_scores(attention, design):
    torch.manual_seed(0)
    model = create_model("meranet_small", num_classes=3, attention=attention, **TINY, **design).eval()
    x = torch.rand(2, 1, 8, 16, 16)
    masks = square_mask(batch=2, frames=8)[:, 0]  # (b, h, w)
    attention_map = explain.learned_attention(model, x)
    table = explain.module_scores(attention_map, masks)
    assert table["module"].unique().tolist() == ["0", "1", "2", "mean"]
    assert len(table) == 2 * 4
    grids = table.drop_duplicates("module")["grid"].tolist()
    # The stem halves h, w; module 1 strides by 2, so its map is 8×8×8 before (input) and 4×4×4 after (output).
    second = "8×8×8" if design.get("st_source") == "input" else "4×4×4"
    assert grids == ["8×8×8", second, "2×2×2" if second == "4×4×4" else "4×4×4", "all"]
    assert table[["auc", "mass_above_median", "mass_in_region"]].notna().all().all()
    assert table["auc"].between(0, 1).all()
    summary = explain.interval_table(table, n_boot=50)
    assert summary["module"].tolist() == ["0", "1", "2", "mean"]


@pytest.mark.parametrize("attention", [a for a in ATTENTION_KINDS if a not in ("both", "spatiotemporal")])
def test_scoring_the_attention_of_a_model_without_spatiotemporal_attention_names_the_model(attention):
    model = create_model("meranet_small", num_classes=3, attention=attention, **TINY).eval()
    with pytest.raises(
        explain.ExplainError, match=rf"'meranet_small' \(attention='{attention}'\) has no spatio-temporal attention"
    ):
        explain.learned_attention(model, torch.rand(1, 1, 8, 16, 16))


def test_module_scores_refuse_a_map_that_is_not_the_learned_attention():
    attribution = explain.Attribution(map=torch.rand(1, 4, 16, 16), method="ig", signed=True)
    with pytest.raises(explain.ExplainError, match="learned attention"):
        explain.module_scores(attribution, square_mask(batch=1)[:, 0])


@pytest.mark.parametrize(
    "mask_shape", [(2, 15, 16), (3, 16, 16), (2, 3, 16, 16), (16, 17)], ids=["width", "batch", "frames", "2d"]
)
def test_a_region_mask_that_does_not_fit_the_clip_names_both_shapes(mask_shape):
    maps = np.random.default_rng(0).random((2, 4, 16, 16))
    with pytest.raises(
        explain.ExplainError, match=rf"{tuple(mask_shape)}".replace("(", r"\(").replace(")", r"\)")
    ) as err:
        explain.region_scores(maps, np.ones(mask_shape, dtype=bool))
    assert "(2, 4, 16, 16)" in str(err.value)


# ---------------------------------------------------------------- training never reads the masks


def test_training_never_reads_the_masks_a_changed_mask_gives_bit_identical_weights(tmp_path):
    from merkit.config import ModelConfig, ProtocolConfig, RunConfig, TrainConfig
    from merkit.data.datasets import build_manifest
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import MotionMaskLoader, build_store
    from merkit.data.synthetic import SynthMEConfig, generate_synthme
    from merkit.evaluation.splits import make_splits
    from merkit.training.runner import run_fold

    root = generate_synthme(
        tmp_path / "synthme",
        SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=32, video_subjects=()),
        progress=False,
    )
    manifest = build_manifest("synthme", root, "synthme_3class")
    store = build_store(
        manifest,
        root,
        PreprocessConfig(frames=8, size=16, color="grey"),
        tmp_path / "store",
        mask_loader=MotionMaskLoader(str(root)),
        progress=False,
    )
    classes = store.index.attrs["classes"]
    fold = make_splits(store.index, "loso", classes=classes)[0]
    config = RunConfig(
        model=ModelConfig(name="meranet_small", overrides=dict(TINY)),
        train=TrainConfig(epochs=1, batch_size=4, lr=3e-3, device="cpu", precision="fp32", seed=3, augment=True),
        protocol=ProtocolConfig(name="loso"),
        preprocess={"frames": 8, "size": 16, "color": "grey"},
    )
    changed = copy.copy(store)
    masks = np.array(store.masks)
    first = int(fold.train[0])
    masks[first] = ~masks[first].astype(bool)  # the training clip's region, turned inside out
    changed.masks = masks
    assert not np.array_equal(changed.masks, store.masks)
    original = run_fold(config, store, fold, classes).state_dict
    again = run_fold(config, changed, fold, classes).state_dict
    assert original.keys() == again.keys()
    for name, value in original.items():
        assert torch.equal(value, again[name]), name
