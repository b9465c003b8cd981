"""merkit._io's one JSON converter and one stable hash, and the cache keys made of it.

The keys below name caches, stores and resume states already on users' disks: they must stay byte for byte
what they were. The literal hex values were computed by the code before ``stable_hash`` existed (commit
024b7e8: ``store_key``, the flow-folder store key, ``manifest_hash``, ``synthme_root``, ``manifest_identity``
each hashing with its own ``json.dumps`` call); a change of any of them invalidates every existing cache,
so it has to be deliberate (a new format version), never a side effect.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from merkit._io import stable_hash, to_jsonable


def _manifest() -> pd.DataFrame:
    from merkit.data.manifest import make_manifest

    rows = [
        dict(
            subject="01",
            sample="EP02_01f",
            path="sub01/EP02_01f",
            onset=46,
            apex=59,
            offset=86,
            fps=200.0,
            emotion="happiness",
            label=0,
            action_units=("4", "L10"),
        ),
        dict(
            subject="02",
            sample="EP03_02",
            path="sub02/EP03_02",
            onset=10,
            offset=40,
            fps=200.0,
            emotion="disgust",
            label=1,
            action_units=(),
        ),
    ]
    return make_manifest(rows, dataset="casme2", label_map="p", classes=["a", "b"])


def test_manifest_and_store_keys_are_the_ones_made_before() -> None:
    from merkit.data.flow import FlowConfig
    from merkit.data.manifest import manifest_hash
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import store_key

    manifest = _manifest()
    assert manifest_hash(manifest) == "d3ea64bb2319921e"
    assert store_key(manifest, PreprocessConfig(frames=8, size=16)) == "4b642cb5364e1dda"
    assert store_key(manifest, PreprocessConfig(frames=8, size=16), flow=FlowConfig(), masks=True) == "ba8e86992280e0d3"
    cropped = manifest.copy()
    cropped["cropped"] = [True, False]
    assert store_key(cropped, PreprocessConfig(frames=8, size=16)) == "a7261c3853b4d67f"


def test_synthme_folder_and_pipeline_identity_are_the_ones_made_before() -> None:
    from merkit.data.synthetic import SynthMEConfig
    from merkit.pipeline.run import manifest_identity
    from merkit.prepare import synthme_root

    assert synthme_root("/cache", SynthMEConfig(seed=3, n_subjects=2)).name == "a9954a7c5622"
    params = {"dataset": "synthme", "data_root": "", "synthme_n_subjects": 3, "seed": 1}
    assert manifest_identity(params) == "synthme:14b2c87ac3db333b"


def test_flow_folder_store_key_is_the_one_made_before(tmp_path: Path) -> None:
    from merkit.data.datasets import build_manifest
    from merkit.data.flow import export_flow_folder
    from merkit.data.store import build_flow_store

    folder = tmp_path / "flow"
    # (n, h, w, 3) (u, v, strain) in 0..1, a fixed ramp: the PNG bytes are part of the key
    features = (np.arange(2 * 28 * 28 * 3, dtype=np.float32).reshape(2, 28, 28, 3) % 97) / 96.0
    export_flow_folder(folder, features, ["01", "02"], ["x", "y"], space=False)
    (folder / "listing.csv").write_text("subject,filename,label\n01,x,0\n02,y,1\n")
    manifest = build_manifest("flow_folder", folder, annotation=folder / "listing.csv")
    store = build_flow_store(manifest, folder, tmp_path / "cache", progress=False)
    assert store.key == store.path.name == "e0f90dcf87f72d60"


def test_config_hash_is_the_compact_sorted_json_it_always_was() -> None:
    from merkit.config import RunConfig, resumable_keys
    from merkit.training.runs import flatten_dict

    config = RunConfig()
    kept = {k: v for k, v in flatten_dict(config.to_dict()).items() if k not in resumable_keys()}
    before = hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()
    assert config.config_hash() == before[:16]
    assert config.config_hash(8) == before[:8]


@pytest.mark.parametrize(
    ("value", "compact", "spaced"),
    [
        ({"b": [1, 2.5, None, True], "a": "é", "c": {"z": 1, "y": (1, 2)}}, "a0945148f3249c72", "32f826c12bd52d0e"),
        ({}, "44136fa355b3678a", "44136fa355b3678a"),
        ([1, "x"], "b1aafb0d4ee706f1", "23b788ec0cd22cc9"),
        ({"p": Path("/a/b")}, "5102430bd1098394", "07e233253a7faafa"),  # no JSON type: its str()
    ],
)
def test_stable_hash_of_known_values(value: object, compact: str, spaced: str) -> None:
    assert stable_hash(value) == compact
    assert stable_hash(value, spaced=True) == spaced
    assert stable_hash(value, 6) == compact[:6]


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": {"x": 1, "y": 2}}) == stable_hash({"b": {"y": 2, "x": 1}, "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


@dataclasses.dataclass
class _Point:
    x: int
    where: Path


def test_to_jsonable_gives_strict_plain_json() -> None:
    value = {
        1: np.int64(3),
        "f": np.float32(0.5),
        "nan": float("nan"),
        "inf": np.float64(math.inf),
        "flag": np.bool_(True),
        "array": np.arange(3).reshape(1, 3),
        "tuple": (1, (2, 3)),
        "set": {3, 1, 2},
        "na": pd.NA,
        "point": _Point(2, Path("a/b")),
        "table": pd.DataFrame({"a": [1, 2]}),
        "series": pd.Series({"k": np.int32(4)}),
    }
    plain = to_jsonable(value)
    assert plain == {
        "1": 3,
        "f": 0.5,
        "nan": None,
        "inf": None,
        "flag": True,
        "array": [[0, 1, 2]],
        "tuple": [1, [2, 3]],
        "set": [1, 2, 3],
        "na": None,
        "point": {"x": 2, "where": "a/b"},
        "table": [{"a": 1}, {"a": 2}],
        "series": {"k": 4},
    }
    assert type(plain["1"]) is int and type(plain["flag"]) is bool and type(plain["f"]) is float
    json.dumps(plain, allow_nan=False)  # strict JSON


def test_to_jsonable_refuses_unknown_objects_unless_given_a_default() -> None:
    with pytest.raises(TypeError, match="object"):
        to_jsonable({"x": object()})
    assert to_jsonable({"x": [complex(1, 2)]}, default=str) == {"x": ["(1+2j)"]}


def test_the_ground_floor_loads_neither_numpy_nor_pandas() -> None:
    """`merkit --help` and the run lock's refusal go through _io/errors: they must stay cheap to import."""
    import subprocess
    import sys

    code = (
        "import sys, merkit._io, merkit.errors, merkit.cli; "
        "print(sorted({'numpy', 'pandas', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
