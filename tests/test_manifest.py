"""merkit.data.manifest: schema and dtypes, every validation rule, strict vs collected, stable hashing."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from merkit.data.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    ManifestProblem,
    make_manifest,
    manifest_hash,
    validate_manifest,
)


def _row(**overrides):
    row = {
        "dataset": "casme2",
        "subject": "01",
        "sample": "EP02_01f",
        "path": "sub01/EP02_01f",
        "onset": 1,
        "apex": 2,
        "offset": 3,
        "fps": 200.0,
        "emotion": "happiness",
        "label": 0,
        "action_units": ("12",),
    }
    row.update(overrides)
    return row


def _manifest(*rows, label_map="casme2_5class", classes=("happiness", "disgust"), **attrs):
    attrs.setdefault("emotions", {"casme2": ["happiness", "disgust", "others"]})
    return make_manifest(list(rows), dataset="casme2", label_map=label_map, classes=classes, **attrs)


def _messages(problems):
    return [f"{p.dataset}/{p.subject}/{p.sample}: {p.message}" for p in problems]


def test_make_manifest_orders_columns_and_sets_dtypes():
    df = _manifest(_row(), _row(sample="EP02_02", apex=None, label=None, action_units=None, notes="x"))
    assert list(df.columns) == list(MANIFEST_COLUMNS) + ["notes"]
    assert str(df["apex"].dtype) == "Int64" and str(df["label"].dtype) == "Int64"
    assert df["onset"].dtype == np.int64 and df["fps"].dtype == np.float64
    assert df["apex"].isna().tolist() == [False, True]
    assert df["action_units"].tolist() == [("12",), ()]
    assert df.attrs["dataset"] == "casme2" and df.attrs["classes"] == ["happiness", "disgust"]


def test_a_good_manifest_has_no_problems():
    assert validate_manifest(_manifest(_row(), _row(sample="EP02_02", apex=None))) == []


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"apex": 9}, "apex 9 lies outside onset..offset 1..3"),
        ({"onset": 5, "apex": None}, "onset 5 is after offset 3"),
        ({"emotion": "joy"}, "unknown emotion 'joy'"),
        ({"emotion": ""}, "empty emotion"),
        ({"subject": "1"}, "subject id '1' does not match"),
        ({"label": 7}, "label 7 is not a class index"),
        ({"fps": 0.0}, "fps must be positive"),
        ({"path": "/abs/sub01"}, "must be a relative POSIX path"),
    ],
)
def test_each_rule_reports_a_problem_naming_the_sample(overrides, expected):
    problems = validate_manifest(_manifest(_row(**overrides)), strict=False)
    assert len(problems) == 1, _messages(problems)
    assert expected in problems[0].message
    assert (problems[0].dataset, problems[0].sample) == ("casme2", "EP02_01f")


def test_duplicates_are_reported():
    problems = validate_manifest(_manifest(_row(), _row()), strict=False)
    assert [p.message for p in problems] == ["duplicate sample (rows 0 and 1)"]


def test_strict_raises_listing_every_problem():
    df = _manifest(_row(apex=9), _row(sample="EP03_01", emotion="joy"))
    with pytest.raises(ManifestError) as error:
        validate_manifest(df)
    assert len(error.value.problems) == 2
    text = str(error.value)
    assert "casme2/01/EP02_01f: apex 9" in text and "casme2/01/EP03_01: unknown emotion 'joy'" in text


def test_missing_columns_are_one_clear_problem():
    df = _manifest(_row()).drop(columns=["onset", "fps"])
    with pytest.raises(ManifestError, match="missing manifest column.*onset, fps"):
        validate_manifest(df)


def test_without_a_label_map_labels_are_not_required():
    df = _manifest(_row(label=None), label_map=None, classes=())
    assert validate_manifest(df) == []


def test_on_disk_check_reports_missing_folders_frames_and_short_videos(tmp_path: Path):
    folder = tmp_path / "sub01" / "EP02_01f"
    folder.mkdir(parents=True)
    for n in (1, 2, 3):
        (folder / f"img{n}.jpg").touch()  # presence only: validation does not decode
    (tmp_path / "sub01" / "EP03_01").mkdir()
    (tmp_path / "sub01" / "EP03_01" / "img1.jpg").touch()
    writer = cv2.VideoWriter(str(tmp_path / "sub01" / "EP04_01.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (16, 16))
    for _ in range(3):
        writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.release()
    df = _manifest(
        _row(),
        _row(sample="EP03_01", path="sub01/EP03_01"),
        _row(sample="EP04_01", path="sub01/EP04_01.avi", onset=0, apex=1, offset=2),
        _row(sample="EP05_01", path="sub01/EP05_01.avi", onset=0, apex=1, offset=5),
        _row(sample="EP06_01", path="sub01/EP06_01"),
    )
    (tmp_path / "sub01" / "EP05_01.avi").write_bytes((tmp_path / "sub01" / "EP04_01.avi").read_bytes())
    problems = {p.sample: p.message for p in validate_manifest(df, tmp_path, strict=False)}
    assert set(problems) == {"EP03_01", "EP05_01", "EP06_01"}
    assert "2 frame(s) of 1..3 missing" in problems["EP03_01"] and ": 2, 3" in problems["EP03_01"]
    assert "has 3 frames" in problems["EP05_01"]
    assert "frame folder not found" in problems["EP06_01"]


def test_problem_str_names_the_sample():
    assert str(ManifestProblem("samm", "006", "006_1_2", "bad")) == "samm/006/006_1_2: bad"
    assert str(ManifestProblem("samm", None, None, "bad")) == "samm: bad"


def test_hash_is_stable_and_sensitive_to_values_and_order():
    df = _manifest(_row(), _row(sample="EP02_02", apex=None))
    again = _manifest(_row(), _row(sample="EP02_02", apex=None))
    assert manifest_hash(df) == manifest_hash(again)
    assert len(manifest_hash(df)) == 16
    assert manifest_hash(df) != manifest_hash(_manifest(_row(), _row(sample="EP02_02", apex=2)))
    assert manifest_hash(df) != manifest_hash(df.iloc[::-1].reset_index(drop=True))
    assert manifest_hash(df) != manifest_hash(
        _manifest(_row(action_units=("12", "L10")), _row(sample="EP02_02", apex=None))
    )


def test_hash_ignores_index_attrs_and_optional_columns():
    df = _manifest(_row(), _row(sample="EP02_02"))
    other = df.copy()
    other.index = [10, 11]
    other.attrs = {}
    other["notes"] = "x"
    assert manifest_hash(df) == manifest_hash(other)
    # the same values from a plain object-dtype frame hash the same: dtypes do not matter
    plain = pd.DataFrame(df.astype(object).to_dict("records"))
    assert manifest_hash(plain) == manifest_hash(df)
