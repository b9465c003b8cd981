"""Explain on real data: facial regions (cascade or geometry) and mass per region over time, without masks.

SynthME's faces carry their true motion regions (AU4 brows for disgust, AU12 mouth corners for happiness,
AU1+2 brows for surprise), which the regions must agree with. 04_explain on a store without motion masks, as a real
dataset gives, runs on the emulated CASME II cropped release (tests/test_release_notebooks.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from merkit.data.datasets import build_manifest
from merkit.data.io import read_sample
from merkit.data.preprocess import PreprocessConfig
from merkit.data.store import MotionMaskLoader, build_store
from merkit.data.synthetic import SynthMEConfig, generate_synthme
from merkit.explain import REGION_NAMES, cascade_regions, clip_regions, explain_regions, shared_events, store_regions
from merkit.models import create_model

TINY = SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=12, size=96, video_subjects=())
# The region each class's synthetic motion lives in (merkit.data.synthetic: AU4, AU12, AU1+2).
MOTION_REGION = {"disgust": "brows", "happiness": "mouth", "surprise": "brows"}


@pytest.fixture(scope="module")
def synthme(tmp_path_factory):
    root = generate_synthme(tmp_path_factory.mktemp("regions") / "synthme", TINY, progress=False)
    return root, build_manifest("synthme", root, "synthme_3class")


@pytest.fixture(scope="module")
def masked_store(synthme, tmp_path_factory):
    root, manifest = synthme
    cache = tmp_path_factory.mktemp("cache")
    return build_store(
        manifest,
        root,
        PreprocessConfig(frames=8, size=32),
        cache,
        mask_loader=MotionMaskLoader(str(root)),
        progress=False,
    )


def _check_layout(masks: dict[str, np.ndarray]) -> None:
    assert list(masks) == list(REGION_NAMES) == ["brows", "eyes", "nose", "mouth"]
    stacked = np.stack(list(masks.values())).astype(int)
    assert stacked.sum(axis=0).max() == 1, "regions are disjoint"
    rows = {}
    for name, mask in masks.items():
        assert mask.any(), f"{name} is empty"
        assert mask.mean() < 0.3, f"{name} covers {mask.mean():.0%} of the frame"
        rows[name] = np.nonzero(mask)[0].mean()
    assert rows["brows"] < rows["eyes"] < rows["nose"] < rows["mouth"], rows  # top to bottom of a face


def test_geometry_regions_are_disjoint_top_to_bottom_and_inset_for_a_haar_crop():
    whole = clip_regions(32, None, crop_method="dataset")
    assert whole.source == "geometry" and set(whole.detail.values()) == {"geometry"}
    _check_layout(whole.masks)
    inset = clip_regions(32, None, crop_method="haar", crop_margin=0.25)
    _check_layout(inset.masks)
    # Inside a Haar crop the face is smaller (the margin around it), so each region is too.
    assert all(inset.masks[n].sum() < whole.masks[n].sum() for n in REGION_NAMES)


def test_bundled_eye_and_mouth_cascades_fire_on_a_synthme_face_where_its_features_are(synthme, masked_store):
    root, manifest = synthme
    found = [cascade_regions(read_sample(row, root).frames[0]) for _, row in manifest.iterrows()]
    with_eyes = [f for f in found if "eyes" in f]
    assert len(with_eyes) >= len(found) // 2, "the eye cascade should fire on most SynthME faces"
    for regions in with_eyes:
        top, left, bottom, right = regions["eyes"]
        assert 0.15 < top < bottom < 0.6 and left < 0.5 < right  # both eyes, upper half
        if "mouth" in regions:
            assert regions["mouth"][0] > bottom
    sets, table = store_regions(masked_store, range(len(manifest)), root)
    assert set(table["region_source"]) <= {"cascade", "cascade+geometry", "geometry"}
    assert (table["region_source"] != "geometry").any()
    for regions in sets:
        _check_layout(regions.masks)


@pytest.mark.parametrize("use_cascades", [False, True], ids=["geometry", "cascade"])
def test_each_class_motion_falls_in_its_named_region(synthme, masked_store, use_cascades):
    root, manifest = synthme
    sets, _ = store_regions(masked_store, range(len(manifest)), root, use_cascades=use_cascades)
    for position, regions in enumerate(sets):
        motion = np.asarray(masked_store.masks[position]).astype(bool)
        overlap = {name: (mask & motion).sum() for name, mask in regions.masks.items()}
        emotion = masked_store.index.iloc[position]["emotion"]
        expected = MOTION_REGION[emotion]
        # The expected region holds more of the motion than the region at the other end of the face.
        other = "mouth" if expected == "brows" else "brows"
        assert overlap[expected] > overlap[other], (emotion, overlap)


def test_explain_regions_shares_sum_to_one_and_agreement_is_against_the_attention(masked_store):
    torch.manual_seed(0)
    net = create_model("meranet_small", num_classes=3, frames=8, size=32).eval()
    result = explain_regions(
        net, masked_store, [0, 4], ["ig", "gradcam"], method_kwargs={"ig": {"n_steps": 4}}, progress=False
    )
    assert set(result.over_time["method"]) == {"ig", "gradcam", "attention"}  # attention always shown
    assert set(result.over_time["region"]) == {*REGION_NAMES, "other"}
    totals = result.over_time.groupby(["clip", "method"])["mass"].sum()
    np.testing.assert_allclose(totals.to_numpy(), 1.0, atol=1e-6)
    assert list(result.agreement["method"].unique()) == ["ig", "gradcam"]
    assert result.agreement.loc[result.agreement["method"] == "ig", "spearman"].between(-1, 1).all()
    summary = result.summary()
    fractions = summary[summary["method"] == "ig"].set_index("region")["region_fraction"]
    assert abs(fractions.sum() - 1.0) < 1e-6  # regions + other tile the frame
    # The learned attention of an untrained MERANet is near uniform: its mass per region is its area.
    attention = summary[summary["method"] == "attention"]
    np.testing.assert_allclose(attention["mass_over_chance"], 1.0, atol=0.05)
    assert set(result.sources["region_source"]) <= {"cascade", "cascade+geometry", "geometry"}


def test_a_model_without_attention_gets_nan_agreement(masked_store):
    net = create_model("meranet_no_attention", num_classes=3, frames=8, size=32).eval()
    result = explain_regions(net, masked_store, [1], ["gradcam"], progress=False)
    assert set(result.over_time["method"]) == {"gradcam"} and result.agreement["spearman"].isna().all()


def test_region_figures_have_titles_labelled_axes_and_a_colour_bar(masked_store, tmp_path):
    from merkit import viz

    torch.manual_seed(0)
    net = create_model("meranet_small", num_classes=3, frames=8, size=32).eval()
    positions = [0, 4]
    result = explain_regions(net, masked_store, positions, ["gradcam"], progress=False)
    events = shared_events(masked_store.index.iloc[positions], 8)
    assert events["onset"] == 0.0 and events["offset"] == 7.0
    lines = viz.region_mass_lines(result.over_time, events=events)
    assert [ax.get_title() for ax in lines.axes] == ["gradcam", "attention"]
    assert lines.axes[0].get_ylabel() == "share of |map| mass (%)" and "frame" in lines.axes[0].get_xlabel()
    heat = viz.region_mass_heatmap(result.summary())
    assert len(heat.axes) == 2 and heat.axes[1].get_ylabel() == "mass / region area (1 = chance)"  # the colour bar
    assert heat.axes[0].get_xlabel() == "facial region" and heat.axes[0].get_title()
    agree = viz.agreement_plot(result.agreement)
    assert agree.axes[0].get_ylabel() == "Spearman ρ with the learned attention" and agree.axes[0].get_ylim() == (
        -1.0,
        1.0,
    )
    sets, _ = store_regions(masked_store, positions)
    overlay = viz.region_overlay(masked_store.clips[0][4], sets[0].masks, source=sets[0].source)
    assert [t.get_text() for t in overlay.axes[0].get_legend().get_texts()] == list(REGION_NAMES)
    for k, figure in enumerate((lines, heat, agree, overlay)):
        figure.savefig(tmp_path / f"{k}.png")
        assert (tmp_path / f"{k}.png").stat().st_size > 1000
