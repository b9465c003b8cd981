"""merkit.data.inputs: the model's InputSpec.kind picks one adapter that knows its dataset, inputs and layout."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from merkit.data.flow import FlowConfig
from merkit.data.inputs import ClipInput, FlowInput, InputKindError, input_adapter, model_dataset
from merkit.data.preprocess import PreprocessConfig
from merkit.data.store import build_store
from merkit.data.torch_dataset import ClipDataset, FlowDataset
from merkit.models import create_model

CLIP_MODEL = {"name": "meranet_small", "frames": 8, "size": 16, "in_channels": 1}


@pytest.fixture(scope="module")
def flow_store(tmp_path_factory):
    """Tiny SynthME (2 subjects x 3 clips), grey 8x16x16 clips plus 28x28 onset→apex flow images (DIS)."""
    from merkit.data.datasets import build_manifest
    from merkit.data.synthetic import SynthMEConfig, generate_synthme

    base = tmp_path_factory.mktemp("inputs")
    root = generate_synthme(
        base / "data",
        SynthMEConfig(n_subjects=2, clips_per_subject=3, n_frames=8, size=32, video_subjects=()),
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


def _clip_model() -> torch.nn.Module:
    name = CLIP_MODEL["name"]
    return create_model(name, num_classes=3, **{k: v for k, v in CLIP_MODEL.items() if k != "name"})


def test_a_clip_model_reads_clips_of_its_declared_shape(flow_store):
    model = _clip_model()
    adapter = input_adapter(model)
    assert isinstance(adapter, ClipInput) and adapter.kind == "clip" and adapter.spec == model.input_spec
    assert isinstance(adapter.dataset(flow_store, np.arange(3)), ClipDataset)
    example = adapter.example(flow_store, 2)
    assert example.shape == model.input_spec.shape(2) == (2, 1, 8, 16, 16)
    torch.testing.assert_close(example[1], ClipDataset(flow_store, [1])[0][0])
    assert adapter.store_problem(flow_store, "meranet_small") is None
    assert adapter.default_baseline == "onset" and adapter.has_frames and adapter.can_attend


def test_a_flow_model_reads_its_own_channels_and_encoding(flow_store):
    offapex, ststnet = input_adapter(create_model("offapexnet")), input_adapter(create_model("ststnet"))
    assert isinstance(offapex, FlowInput) and offapex.kind == "flow" and offapex.channels == ("u", "v")
    data = offapex.dataset(flow_store, np.arange(4))
    assert isinstance(data, FlowDataset) and data.channels == ("u", "v")
    assert offapex.example(flow_store, 2).shape == (2, 2, 28, 28)
    uv = offapex.example(flow_store, 1)[0]
    assert 0.0 <= float(uv.min()) and float(uv.max()) <= 1.0  # "unit": each channel min-max scaled
    png = ststnet.example(flow_store, 1)[0]  # (strain, v, u) as the 8-bit PNG: 0..255 integers
    assert png.shape == (3, 28, 28) and float(png.max()) == 255.0 and torch.equal(png, png.round())
    torch.testing.assert_close(png, model_dataset(ststnet.spec, flow_store, np.array([0]), augment=False, seed=0)[0][0])
    assert offapex.store_problem(flow_store, "offapexnet") is None
    assert offapex.default_baseline == "zeros" and not offapex.has_frames and not offapex.can_attend


def test_store_problems_name_what_is_missing_and_how_to_fix_it(flow_store, tmp_path):
    assert "FlowConfig(size=32)" in input_adapter(create_model("offapexnet", size=32)).store_problem(
        flow_store, "offapexnet"
    )
    assert "store gives (1, 8, 16, 16)" in input_adapter(create_model("meranet_small")).store_problem(flow_store, "m")
    no_flow = SimpleNamespace(flow=None, path=tmp_path / "store", index=flow_store.index)
    problem = input_adapter(create_model("ststnet")).store_problem(no_flow, "ststnet")
    assert "'ststnet' reads onset→apex flow" in problem and "no flow (no flow.npy)" in problem


def test_memory_format_is_channels_last_3d_only_for_clips_in_bf16_on_cpu():
    cpu = torch.device("cpu")
    clip, flow = input_adapter(_clip_model()), input_adapter(create_model("ststnet"))
    assert clip.memory_format(cpu, torch.bfloat16) is torch.channels_last_3d
    assert clip.memory_format(cpu, None) is None
    assert flow.memory_format(cpu, torch.bfloat16) is None


def test_a_flow_image_is_lifted_to_a_one_frame_clip_and_back():
    model = create_model("offapexnet").eval()
    adapter = input_adapter(model)
    x = model.input_spec.example(2, seed=0)  # (2, 2, 28, 28)
    volume = adapter.to_volume(x)
    assert volume.shape == (2, 2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(adapter.forward(model)(volume), model(x))
    assert adapter.from_volume(volume[:, 0]).shape == (2, 28, 28)
    assert adapter.volume_shape((7, 7)) == (1, 7, 7) and adapter.input_shape((1, 7, 7)) == (7, 7)


def test_a_users_clip_becomes_the_same_input_as_a_training_item(flow_store):
    adapter = input_adapter(_clip_model())
    processed = SimpleNamespace(clip=np.asarray(flow_store.clips[2]))  # (T, S, S, C) uint8, as preprocess gives it
    x = adapter.single_input(np.empty(0), np.array([0]), processed, normalise="clip")
    torch.testing.assert_close(x[0], ClipDataset(flow_store, [2])[0][0])
    stats = (np.array([0.4], np.float32), np.array([0.2], np.float32))
    x = adapter.single_input(np.empty(0), np.array([0]), processed, normalise="dataset", stats=stats)
    torch.testing.assert_close(x[0], ClipDataset(flow_store, [2], normalise="dataset", stats=stats)[0][0])


def test_a_model_without_a_spec_reads_clips_and_an_unknown_kind_is_refused():
    assert isinstance(input_adapter(None), ClipInput) and input_adapter(torch.nn.Conv3d(1, 1, 1)).spec is None
    with pytest.raises(InputKindError, match=r"input kind 'audio'.*known kinds: \['clip', 'flow'\]"):
        input_adapter(SimpleNamespace(kind="audio", channels=1))
    with pytest.raises(ValueError):  # also a ValueError, for callers that catch the builtin
        input_adapter(SimpleNamespace(kind=None))
    with pytest.raises(InputKindError, match="2 channels .u, v. or 3"):
        FlowInput(SimpleNamespace(kind="flow", channels=1, describe=lambda: "flow image (B, C=1)")).channels
