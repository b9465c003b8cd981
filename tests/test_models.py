"""Model registry, MERANet (attention, ablations, orders), baselines, input checks, summaries.

Most checks run every registered model at tiny sizes (overrides below) so the file stays fast; one test
runs every model at its registered default input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from merkit.models import (
    AttentionMaps,
    InputShapeError,
    InputSpec,
    MERANet,
    create_model,
    list_models,
    model_summary,
    models_table,
)
from merkit.models.meranet import ChannelAttention3d, SpatioTemporalAttention3d
from merkit.models.summary import models_markdown

MERANET_FAMILY = ["meranet", "meranet_small", "meranet_no_attention", "meranet_channel_only", "meranet_st_only"]
REQUIRED = MERANET_FAMILY + ["stcnn", "resnet3d", "ststnet", "ststnet_kit", "offapexnet"]

# Tiny trunks: two stages of 8 and 16 channels on 1×8×16×16 clips.
TINY_TRUNK = dict(
    frames=8, size=16, widths=(8, 16), depths=(1, 2), temporal_strides=(1, 2), spatial_strides=(1, 2), reduction=2
)
TINY = {
    **{name: TINY_TRUNK for name in MERANET_FAMILY},
    "resnet3d": {k: v for k, v in TINY_TRUNK.items() if k != "reduction"},
    "stcnn": dict(frames=15, size=16, filters=4, hidden=8),
    "ststnet": {},
    "ststnet_kit": {},
    "offapexnet": dict(hidden=16),
}


def tiny_model(name: str, num_classes: int = 3, seed: int = 0, **extra) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=num_classes, **{**TINY.get(name, {}), **extra})


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


# ------------------------------------------------------------------------------------------- registry
def test_registry_lists_every_required_name():
    assert set(REQUIRED) <= set(list_models())


def test_every_registered_model_has_tiny_settings_in_this_file():
    assert set(list_models()) <= set(TINY), "add tiny overrides for new models to TINY"


def test_unknown_name_raises_value_error_listing_known_names():
    with pytest.raises(ValueError, match="unknown model 'meranet_xl'") as info:
        create_model("meranet_xl")
    for name in REQUIRED:
        assert name in str(info.value)


def test_unknown_override_raises_value_error_naming_accepted_arguments():
    with pytest.raises(ValueError, match="does not take \\['widht'\\]") as info:
        create_model("meranet_small", widht=3)
    assert "widths" in str(info.value)


def test_model_config_rebuilds_the_same_model():
    model = tiny_model("meranet_small", num_classes=4, attention="channel")
    config = json.loads(json.dumps(model.model_config))  # must survive a run directory's config.json
    name = config.pop("name")
    num_classes = config.pop("num_classes")
    torch.manual_seed(0)
    rebuilt = create_model(name, num_classes=num_classes, **config)
    assert rebuilt.model_name == "meranet_small" and num_classes == 4
    state, rebuilt_state = model.state_dict(), rebuilt.state_dict()
    assert state.keys() == rebuilt_state.keys()
    assert all(torch.equal(state[k], rebuilt_state[k]) for k in state)


# ----------------------------------------------------------------------------- every registered model
@pytest.mark.parametrize("name", list_models())
def test_default_input_gives_finite_logits_of_the_right_shape(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    spec = model.input_spec
    assert isinstance(spec, InputSpec)
    with torch.no_grad():
        logits = model(spec.example(batch_size=2, seed=1))
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, 5)
    assert model.num_classes == 5  # train.py reads it
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_receives_a_gradient(name):
    model = tiny_model(name).train()
    x = model.input_spec.example(batch_size=3, seed=2)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2]))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", list_models())
def test_same_seed_gives_the_same_output_and_another_seed_does_not(name):
    first = tiny_model(name, seed=7).eval()
    second = tiny_model(name, seed=7).eval()
    other = tiny_model(name, seed=8).eval()
    x = first.input_spec.example(batch_size=2, seed=3)
    with torch.no_grad():
        a, b, c = first(x), second(x), other(x)
        again = first(x)
    assert torch.equal(a, b)
    assert torch.equal(a, again)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", list_models())
def test_no_inplace_activation_and_each_module_runs_once_per_forward(name):
    model = tiny_model(name).eval()
    calls: dict[str, int] = {}
    handles = []
    for mname, module in leaf_modules(model):
        if isinstance(module, nn.ReLU):
            assert module.inplace is False, f"{name}.{mname} is an in-place ReLU"

        def count(module, inputs, output, key=mname):
            calls[key] = calls.get(key, 0) + 1

        handles.append(module.register_forward_hook(count))
    with torch.no_grad():
        model(model.input_spec.example(batch_size=2, seed=0))
    for handle in handles:
        handle.remove()
    used_twice = {k: v for k, v in calls.items() if v != 1}
    assert not used_twice, f"modules called more than once per forward: {used_twice}"
    parameterised = {n for n, m in leaf_modules(model) if list(m.parameters(recurse=False))}
    assert parameterised <= set(calls), f"modules never called: {parameterised - set(calls)}"


@pytest.mark.parametrize("name", list_models())
def test_forward_is_forward_head_of_forward_features(name):
    model = tiny_model(name).eval()
    x = model.input_spec.example(batch_size=2, seed=4)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x)))


# -------------------------------------------------------------------------------------- bad inputs
def _bad_inputs(spec: InputSpec) -> dict[str, tuple[torch.Tensor, str]]:
    good = spec.shape(batch_size=2)
    wrong_channels = (good[0], spec.channels + 2, *good[2:])
    wrong_size = (*good[:-2], spec.size + 3, spec.size + 3)
    return {
        "rank": (torch.zeros(good[1:]), f"rank {len(good) - 1} instead of {len(good)}"),
        "channels": (torch.zeros(wrong_channels), f"channels {spec.channels + 2} instead of {spec.channels}"),
        "size": (torch.zeros(wrong_size), f"size {spec.size + 3}×{spec.size + 3} instead of {spec.size}×{spec.size}"),
        "dtype": (torch.zeros(good, dtype=torch.uint8), "dtype torch.uint8"),
    }


@pytest.mark.parametrize("problem", ["rank", "channels", "size", "dtype"])
@pytest.mark.parametrize("name", list_models())
def test_bad_input_error_states_what_the_model_expects(name, problem):
    model = tiny_model(name).eval()
    x, detail = _bad_inputs(model.input_spec)[problem]
    with pytest.raises(InputShapeError) as info:
        model(x)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert name in message
    assert model.input_spec.describe() in message
    assert detail in message


def test_wrong_number_of_frames_is_reported():
    model = tiny_model("meranet_small")
    x = torch.zeros(1, 1, model.input_spec.frames + 1, model.input_spec.size, model.input_spec.size)
    with pytest.raises(InputShapeError, match=f"frames T={model.input_spec.frames + 1} instead of"):
        model(x)
    with pytest.raises(InputShapeError, match="frames T="):
        model.attention_maps(x)


def test_input_spec_rejects_inconsistent_declarations():
    with pytest.raises(ValueError, match="frames"):
        InputSpec(kind="clip", channels=1, frames=None, size=64)
    with pytest.raises(ValueError, match="no time axis"):
        InputSpec(kind="flow", channels=3, frames=4, size=28)
    with pytest.raises(ValueError, match="kind"):
        InputSpec(kind="video", channels=1, frames=4, size=28)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- MERANet attention maps
ABLATION = {
    "meranet": ("both", True, True),
    "meranet_small": ("both", True, True),
    "meranet_no_attention": ("none", False, False),
    "meranet_channel_only": ("channel", True, False),
    "meranet_st_only": ("spatiotemporal", False, True),
}


def _block_output_shapes(model: MERANet, x: torch.Tensor) -> list[torch.Size]:
    """Each residual module's output shape, seen by forward hooks (independently of attention_maps)."""
    shapes: list[torch.Size] = []
    handles = [b.register_forward_hook(lambda m, i, o: shapes.append(o.shape)) for b in model.blocks()]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return shapes


@pytest.mark.parametrize("order", ["ca_sta", "sta_ca", "parallel"])
@pytest.mark.parametrize("name", MERANET_FAMILY)
def test_attention_maps_have_the_declared_shapes_and_lie_in_unit_interval(name, order):
    model = tiny_model(name, attention_order=order).eval()
    _, has_channel, has_st = ABLATION[name]
    x = model.input_spec.example(batch_size=2, seed=5)
    shapes = _block_output_shapes(model, x)
    with torch.no_grad():
        maps = model.attention_maps(x)
        upsampled = model.attention_maps(x, upsample=True)
    assert len(maps) == len(upsampled) == len(shapes) == sum(model.model_config["depths"])
    for block_maps, block_up, (b, c, t, h, w) in zip(maps, upsampled, shapes):
        assert isinstance(block_maps, AttentionMaps)
        if has_channel:
            assert block_maps.channel.shape == (b, c)
            assert 0 <= block_maps.channel.min() and block_maps.channel.max() <= 1
            assert torch.equal(block_up.channel, block_maps.channel)
        else:
            assert block_maps.channel is None and block_up.channel is None
        if has_st:
            assert block_maps.spatiotemporal.shape == (b, 1, t, h, w)
            assert block_up.spatiotemporal.shape == (b, 1, *x.shape[2:])
            for m in (block_maps.spatiotemporal, block_up.spatiotemporal):
                assert 0 <= m.min() and m.max() <= 1
        else:
            assert block_maps.spatiotemporal is None and block_up.spatiotemporal is None
    # The stages really downsample, so upsampling is not a no-op for the later modules.
    assert shapes[-1][2:] != x.shape[2:]


def test_attention_maps_match_what_hooks_on_the_attention_modules_see():
    model = tiny_model("meranet_small").eval()
    seen: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda mod, i, o: seen.append(o))
        for m in model.modules()
        if isinstance(m, (ChannelAttention3d, SpatioTemporalAttention3d))
    ]
    x = model.input_spec.example(batch_size=2, seed=6)
    with torch.no_grad():
        maps = model.attention_maps(x)
    for handle in handles:
        handle.remove()
    expected = [t for m in maps for t in (m.channel, m.spatiotemporal)]  # order ca_sta: channel first
    assert len(seen) == len(expected)
    assert all(torch.equal(a, b) for a, b in zip(seen, expected))


def test_attention_scales_the_features_it_reports():
    """Channel weights multiply the block's features: with channel attention re-weighting, a block's
    output equals relu(bn2(conv2(...)) * w + skip)."""
    model = tiny_model("meranet_channel_only").eval()
    block = next(model.blocks())
    x = torch.randn(2, block.conv1.in_channels, 8, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        out, maps = block.forward_with_attention(x)
        y = block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x)))))
        manual = torch.relu(y * maps.channel[:, :, None, None, None] + block.shortcut(x))
    torch.testing.assert_close(out, manual)


def test_attention_orders_share_parameters_but_compute_different_functions():
    outputs = {}
    params = {}
    x = None
    for order in ("ca_sta", "sta_ca", "parallel"):
        model = tiny_model("meranet_small", seed=3, attention_order=order).eval()
        x = model.input_spec.example(batch_size=2, seed=1) if x is None else x
        with torch.no_grad():
            outputs[order] = model(x)
        params[order] = sum(p.numel() for p in model.parameters())
    assert len(set(params.values())) == 1
    assert not torch.allclose(outputs["ca_sta"], outputs["sta_ca"])
    assert not torch.allclose(outputs["ca_sta"], outputs["parallel"])


def test_invalid_attention_settings_raise():
    with pytest.raises(ValueError, match="attention must be one of"):
        tiny_model("meranet_small", attention="spatial")
    with pytest.raises(ValueError, match="attention_order must be one of"):
        tiny_model("meranet_small", attention_order="cbam")


# ---------------------------------------------------------------------------------------- ablations
def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _expected_attention_params(config: dict) -> tuple[int, int]:
    """Channel- and spatio-temporal-attention parameter totals from the config, by the blocks' formulas."""
    ca = st = 0
    kt, kh, kw = config["st_kernel_size"] if "st_kernel_size" in config else (3, 7, 7)
    for width, depth in zip(config["widths"], config["depths"]):
        hidden = max(1, width // config["reduction"])
        ca += depth * (2 * width * hidden + hidden + width)
        st += depth * (2 * kt * kh * kw + 1)
    return ca, st


@pytest.mark.parametrize("sizes", ["tiny", "registered"])
def test_ablations_remove_exactly_the_attention_parameters(sizes):
    extra = TINY_TRUNK if sizes == "tiny" else {}
    models = {name: create_model(name, **extra) for name in MERANET_FAMILY if name != "meranet_small"}
    counts = {name: _count(model) for name, model in models.items()}
    ca, st = _expected_attention_params(models["meranet"].model_config)
    assert ca > 0 and st > 0
    assert counts["meranet_channel_only"] == counts["meranet_no_attention"] + ca
    assert counts["meranet_st_only"] == counts["meranet_no_attention"] + st
    assert counts["meranet"] == counts["meranet_no_attention"] + ca + st
    resnet_extra = {k: v for k, v in extra.items() if k != "reduction"}
    assert _count(create_model("resnet3d", **resnet_extra)) == counts["meranet_no_attention"]


@pytest.mark.parametrize(
    "attention, n_channel, n_st",
    [("both", 3, 3), ("channel", 3, 0), ("spatiotemporal", 0, 3), ("none", 0, 0)],
)
def test_attention_override_and_ablation_names_build_the_same_modules(attention, n_channel, n_st):
    model = tiny_model("meranet_small", attention=attention)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(ChannelAttention3d) == n_channel
    assert kinds.count(SpatioTemporalAttention3d) == n_st
    name = {
        "both": "meranet",
        "channel": "meranet_channel_only",
        "spatiotemporal": "meranet_st_only",
        "none": "meranet_no_attention",
    }[attention]
    by_name = tiny_model(name)
    assert [type(m) for m in by_name.modules()] == kinds
    assert _count(by_name) == _count(model)


# -------------------------------------------------------------------------------- summary and table
class _ToyConv(nn.Module):
    """One Conv3d: its FLOPs are known exactly (2 per multiply-add)."""

    input_spec = InputSpec(kind="clip", channels=2, frames=4, size=6)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 3, kernel_size=(1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3, 4))


def test_model_summary_counts_parameters_and_conv_flops_exactly():
    toy = _ToyConv().train()
    summary = model_summary(toy, batch_size=2)
    assert summary["params"] == 2 * 3 * 9 + 3
    assert summary["flops"] == 2 * (2 * 3 * 9) * (4 * 6 * 6) * 2  # 2 FLOPs × MACs per output × outputs × batch
    assert toy.training  # mode restored


def test_model_summary_of_meranet_grows_with_input_size_but_params_do_not():
    small = model_summary(tiny_model("meranet_small"))
    large = model_summary(tiny_model("meranet_small", size=32))
    assert small["params"] == large["params"]
    assert 3.5 < large["flops"] / small["flops"] < 4.5  # 4× the pixels, ~4× the conv work


@pytest.fixture(scope="module")
def table():
    return models_table()


def test_models_table_has_one_row_per_model_with_summary_numbers(table):
    assert list(table["model"]) == list_models()
    assert {"model", "kind", "input", "params", "flops", "gflops", "description"} <= set(table.columns)
    row = table.set_index("model").loc["meranet_small"]
    torch.manual_seed(0)
    summary = model_summary(create_model("meranet_small"))
    assert row["params"] == summary["params"] and row["flops"] == summary["flops"]
    assert row["input"] == "1×16×32×32"
    assert (table["params"] > 0).all() and (table["flops"] > 0).all()


def test_docs_table_matches_the_registered_models(table):
    docs = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text(encoding="utf-8")
    assert models_markdown(table) in docs, "regenerate the table in docs/models.md with models_markdown()"


# ---------------------------------------------------------------------------------------- baselines
def test_stcnn_follows_the_paper_layers_and_rejects_too_short_clips():
    model = create_model("stcnn", frames=18)
    assert model.conv.out_channels == 32 and model.conv.kernel_size == (15, 3, 3)  # 3×3×15 (h, w, t)
    assert model.pool.kernel_size == (3, 3, 3)  # the paper's pool of 3 once T allows it
    assert model.dense.out_features == 128
    with torch.no_grad():
        features = model.forward_features(model.input_spec.example(batch_size=1))
    assert features.flatten(1).shape[1] == model.dense.in_features
    with pytest.raises(ValueError, match="needs T >= 15"):
        create_model("stcnn", frames=12)


def test_ststnet_is_built_as_its_authors_code_28_30_10_5_and_400_features():
    model = create_model("ststnet").eval()
    assert model.input_spec == InputSpec(kind="flow", channels=3, frames=None, size=28, encoding="bgr255")
    assert [branch[0].out_channels for branch in model.branches] == [3, 5, 8]
    for branch in model.branches:  # conv -> ReLU -> BatchNorm -> max-pool -> dropout, in that order
        assert [type(m) for m in branch] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d, nn.Dropout]
        assert branch[0].padding == (2, 2) and branch[4].p == 0.5
        pool = branch[3]
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 3, 1)
    x = model.input_spec.example(batch_size=2, seed=0)
    assert x.min() >= 0 and x.max() <= 255 and torch.equal(x, x.round())  # 8-bit pixel values, unscaled
    sides = []
    hooks = [
        model.branches[0][i].register_forward_hook(lambda m, i, o: sides.append(tuple(o.shape[-2:]))) for i in (0, 3)
    ]
    with torch.no_grad():
        features = model.forward_features(x)
    for hook in hooks:
        hook.remove()
    assert sides == [(30, 30), (10, 10)]
    assert features.shape == (2, 16, 5, 5) and model.head.in_features == 400


def test_ststnet_kit_keeps_the_earlier_variant_same_padding_no_bn_no_dropout():
    model = create_model("ststnet_kit")
    assert model.input_spec == InputSpec(kind="flow", channels=3, frames=None, size=28, encoding="unit")
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in model.modules())
    assert model.branches[0][0].padding == (1, 1)
    with torch.no_grad():
        assert model.forward_features(model.input_spec.example(batch_size=2)).shape == (2, 16, 5, 5)
    assert model.head.in_features == 400


def test_offapexnet_streams_see_only_their_own_flow_component():
    model = tiny_model("offapexnet").eval()
    assert model.input_spec == InputSpec(kind="flow", channels=2, frames=None, size=28)
    x = model.input_spec.example(batch_size=2, seed=0)
    changed_v = torch.cat([x[:, 0:1], x[:, 1:2] + 1.0], dim=1)  # (b, 1, h, w) × 2 -> (b, 2, h, w)
    with torch.no_grad():
        assert torch.equal(model.stream_u(x[:, 0:1]), model.stream_u(changed_v[:, 0:1]))
        assert not torch.equal(model.forward_features(x), model.forward_features(changed_v))


def test_resnet3d_has_no_attention_and_reports_none_maps():
    model = tiny_model("resnet3d").eval()
    assert not any(isinstance(m, (ChannelAttention3d, SpatioTemporalAttention3d)) for m in model.modules())
    with torch.no_grad():
        maps = model.attention_maps(model.input_spec.example(batch_size=1), upsample=True)
    assert maps and all(m.channel is None and m.spatiotemporal is None for m in maps)
    with pytest.raises(ValueError, match="does not take \\['attention'\\]"):
        create_model("resnet3d", attention="both")


@pytest.mark.parametrize("name", ["meranet_small", "resnet3d"])
def test_remove_static_makes_the_output_blind_to_a_still_image_only_when_on(name):
    """With remove_static a per-pixel offset constant over time (a different still face) changes nothing."""
    torch.manual_seed(0)
    clip = torch.randn(2, 1, TINY_TRUNK["frames"], TINY_TRUNK["size"], TINY_TRUNK["size"])
    still = 3 * torch.randn(2, 1, 1, TINY_TRUNK["size"], TINY_TRUNK["size"])  # (b, 1, 1, h, w): same in every frame
    for remove_static in (True, False):
        overrides = {**TINY[name], "remove_static": remove_static}
        model = create_model(name, **overrides).eval()
        with torch.no_grad():
            same = torch.allclose(model(clip), model(clip + still), atol=1e-4)
        assert same is remove_static, (name, remove_static)


# ------------------------------------------------------------------------------------ attention designs
def _block_features(block, x):
    """The block's convolved features before any attention (conv-BN-ReLU-conv-BN)."""
    return block.bn2(block.conv2(block.relu1(block.bn1(block.conv1(x)))))


@pytest.mark.parametrize("scale", ["gate", "residual"])
def test_attention_scale_multiplies_the_features_by_the_map_or_by_one_plus_it(scale):
    from merkit.models.meranet import ResidualAttentionBlock3d

    torch.manual_seed(0)
    block = ResidualAttentionBlock3d(4, 4, attention="spatiotemporal", scale=scale).eval()
    x = torch.randn(2, 4, 4, 8, 8)
    with torch.no_grad():
        out, maps = block.forward_with_attention(x)
        y = _block_features(block, x)
        factor = maps.spatiotemporal if scale == "gate" else 1 + maps.spatiotemporal
        torch.testing.assert_close(out, torch.relu(y * factor + x))


def test_softmax_attention_is_a_non_negative_map_of_mean_one_per_frame():
    from merkit.models.meranet import SpatioTemporalAttention3d

    torch.manual_seed(0)
    attention = SpatioTemporalAttention3d(normalise="softmax", temperature=0.5)
    torch.nn.init.normal_(attention.conv.weight, std=1.0)
    with torch.no_grad():
        st_map = attention(torch.randn(2, 3, 4, 6, 6))
    assert st_map.shape == (2, 1, 4, 6, 6) and (st_map >= 0).all()
    torch.testing.assert_close(st_map.mean(dim=(3, 4)), torch.ones(2, 1, 4))
    assert st_map.amax() > 1.5  # not flat: the temperature sharpens it


def test_input_source_map_is_at_the_module_input_resolution_and_pooled_onto_its_output():
    from merkit.models.meranet import ResidualAttentionBlock3d

    torch.manual_seed(0)
    block = ResidualAttentionBlock3d(4, 8, stride=(2, 2, 2), attention="spatiotemporal", st_source="input").eval()
    x = torch.randn(1, 4, 4, 8, 8)
    with torch.no_grad():
        out, maps = block.forward_with_attention(x)
        y = _block_features(block, x)
        applied = torch.nn.functional.avg_pool3d(maps.spatiotemporal, 2)  # (1, 1, 4, 8, 8) -> (1, 1, 2, 4, 4)
        torch.testing.assert_close(out, torch.relu(y * applied + block.shortcut(x)))
    assert maps.spatiotemporal.shape == (1, 1, 4, 8, 8) and out.shape == (1, 8, 2, 4, 4)


@pytest.mark.parametrize(
    "argument, value",
    [("attention_scale", "multiply"), ("st_source", "middle"), ("st_normalise", "tanh"), ("st_temperature", 0.0)],
)
def test_a_bad_attention_design_names_the_argument(argument, value):
    with pytest.raises(ValueError, match=argument):
        tiny_model("meranet_small", **{argument: value})
