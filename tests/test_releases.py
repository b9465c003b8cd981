"""SynthME release mode: each emulated release has its real release's shape (checked by the independent
``../shared/tools/check_release.py``), is read by that dataset's own builder, plants the named sheet faults,
composes to the MEGC2019 counts, has a known face box that the Haar detector finds, and masks for explain."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook

from merkit.cli import main as cli_main
from merkit.data.datasets import build_manifest
from merkit.data.manifest import ManifestError
from merkit.data.synthetic import (
    ReleaseExistsError,
    has_motion_masks,
    load_motion_mask,
    release_info,
    write_release,
)

REPO = Path(__file__).resolve().parents[1]
# CI has ../shared beside the clone; a worktree under a folder of worktrees has it one level higher.
CHECKER = next(
    (
        p / "tools" / "check_release.py"
        for p in (REPO.parent / "shared", REPO.parent.parent / "shared")
        if (p / "tools" / "check_release.py").is_file()
    ),
    None,
)


def check_release(kind: str, root: Path, *options: str) -> None:
    if CHECKER is None:
        pytest.skip("../shared/tools/check_release.py is absent (it lies beside the clone in CI)")
    result = subprocess.run([sys.executable, str(CHECKER), kind, str(root), *options], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def first_frame(root: Path, relative: str) -> np.ndarray:
    folder = root / relative
    frame = cv2.imread(str(sorted(folder.iterdir())[0]), cv2.IMREAD_UNCHANGED)
    assert frame is not None, folder
    return frame


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


@pytest.fixture(scope="module")
def casme2_small(tmp_path_factory) -> Path:
    """CASME II at scale 1 (640×480 raw frames), raw and cropped, a few clips per class."""
    return write_release("casme2", tmp_path_factory.mktemp("rel") / "CASME2", small=True, progress=False)


@pytest.fixture(scope="module")
def megc_full(tmp_path_factory) -> Path:
    """The MEGC2019 root at the real counts, shrunk; CASME II cropped only (the checker wants raw at 640×480)."""
    return write_release(
        "megc2019", tmp_path_factory.mktemp("rel") / "MEGC", scale=0.1, layout="cropped", progress=False
    )


# ------------------------------------------------------------------------------------------ CASME II


def test_casme2_small_release_has_the_real_shape_and_builds_with_its_own_yaml(casme2_small):
    check_release("casme2", casme2_small)
    assert first_frame(
        casme2_small,
        "CASME2_RAW_selected/sub01/" + next(p.name for p in (casme2_small / "CASME2_RAW_selected/sub01").iterdir()),
    ).shape == (480, 640, 3)
    info = release_info(casme2_small)
    assert info["kind"] == "casme2" and info["small"] is True
    # small: the expected counts are not checked, so a strict build passes; the cropped root is preferred
    df = build_manifest("casme2", casme2_small, "casme2_5class")
    assert df["cropped"].all() and set(df["path"].str.split("/").str[0]) == {"Cropped"}
    full = build_manifest("casme2", casme2_small)
    by_clip = full.set_index(["subject", "sample"])
    assert pd.isna(by_clip.loc[("04", "EP12_01f"), "apex"])
    assert by_clip.loc[("05", "EP09_05f"), "apex"] == by_clip.loc[("05", "EP09_05f"), "onset"]
    assert int((full["apex"] == full["offset"]).sum()) == 3  # the apex = offset fault, on each small happiness clip
    # cropped frames are the face alone, their size differs by clip
    sizes = {first_frame(casme2_small, p).shape[:2] for p in df["path"]}
    assert len(sizes) > 3 and all(h == w and 200 <= h <= 300 for h, w in sizes)


def test_casme2_sheet_cells_are_typed_like_the_real_sheet(casme2_small):
    sheet = load_workbook(casme2_small / "CASME2-coding-20140508.xlsx").worksheets[0]
    rows = list(sheet.iter_rows(min_row=2, values_only=True))
    assert all(isinstance(r[0], str) and len(r[0]) == 2 for r in rows)  # Subject '01' is text
    units = [r[7] for r in rows]
    assert any(isinstance(u, int) for u in units) and any(isinstance(u, str) and "+" in u for u in units)
    assert all(isinstance(u, int) == str(u).isdigit() for u in units)  # a number cell exactly when one AU


def test_haar_box_on_a_raw_clip_overlaps_the_recorded_face_box(casme2_small):
    from merkit.data.preprocess import detect_face_box

    with open(casme2_small / "synthme_truth" / "face_boxes.csv", newline="") as handle:
        boxes = list(csv.DictReader(handle))
    assert len(boxes) == len(build_manifest("casme2", casme2_small))
    for box in boxes:
        onset = first_frame(casme2_small, box["folder"])
        found = detect_face_box(cv2.cvtColor(onset, cv2.COLOR_BGR2RGB))
        assert found is not None, box["sample"]
        truth = (int(box["x"]), int(box["y"]), int(box["w"]), int(box["h"]))
        assert iou((found.x, found.y, found.w, found.h), truth) >= 0.5, (box["sample"], found, truth)


def test_masks_are_in_the_frame_coordinates_the_builder_reads(casme2_small, tmp_path):
    assert has_motion_masks(casme2_small) and not has_motion_masks(tmp_path)
    df = build_manifest("casme2", casme2_small)
    for row in df.itertuples():
        mask = load_motion_mask(casme2_small, row.subject, row.sample, "casme2")
        assert mask.shape == first_frame(casme2_small, row.path).shape[:2] and 0 < mask.mean() < 0.3
    raw = write_release("casme2", tmp_path / "raw", small=True, layout="raw", scale=0.25, progress=False)
    row = build_manifest("casme2", raw).iloc[0]
    mask = load_motion_mask(raw, row["subject"], row["sample"])
    assert row["path"].startswith("CASME2_RAW_selected/") and mask.shape == first_frame(raw, row["path"]).shape[:2]
    with pytest.raises(FileNotFoundError, match="EP99_99"):
        load_motion_mask(raw, "01", "EP99_99")


# ---------------------------------------------------------------------------- full counts, MEGC2019


def test_megc2019_full_count_root_passes_the_checker_with_counts(megc_full):
    check_release("megc2019", megc_full, "--counts")
    assert release_info(megc_full)["small"] is False
    assert {p.name for p in megc_full.iterdir()} == {"CASME2", "SAMM", "SMIC", "synthme_truth"}


def test_casme2_part_counts_and_the_2019_relabelling(megc_full):
    part = megc_full / "CASME2"
    df = build_manifest("casme2", part)  # strict: 255 clips / 26 subjects as expected
    assert df["emotion"].value_counts().to_dict() == {
        "others": 99,
        "disgust": 63,
        "happiness": 32,
        "repression": 27,
        "surprise": 25,
        "sadness": 7,
        "fear": 2,
    }
    kept = df[df["emotion"].isin(["disgust", "repression", "happiness", "surprise"])]
    usable = kept[kept["apex"].notna() & (kept["apex"] != kept["onset"])]
    assert len(usable) == 145 and usable["subject"].nunique() == 24
    assert int((df["apex"] == df["offset"]).sum()) == 4
    newer = build_manifest("casme2", part, annotation="CASME2-coding-20190701.xlsx")
    changed = newer.merge(df, on=["subject", "sample"], suffixes=("_2019", "_2014"))
    moved = changed[changed["emotion_2019"] != changed["emotion_2014"]]
    assert len(moved) == 3 and set(moved["subject"]) == {"24"}
    assert set(zip(moved["emotion_2014"], moved["emotion_2019"])) == {("sadness", "surprise")}
    assert (changed["action_units_2019"] != changed["action_units_2014"]).sum() == 57


def test_samm_part_has_exactly_the_two_planted_apex_faults(megc_full):
    with pytest.raises(ManifestError):
        build_manifest("samm", megc_full / "SAMM", on_problem="error")
    df = build_manifest("samm", megc_full / "SAMM", strict=False, on_problem="error")
    assert len(df) == 159 and df["subject"].nunique() == 29
    faults = {(p.sample, p.message.split(": ")[-1] if ": " in p.message else p.message) for p in df.attrs["problems"]}
    assert {s for s, _ in faults} == {"028_4_1", "032_3_1"}
    assert any("1143" in m and "1134" in m for s, m in faults if s == "028_4_1")
    assert any("1930" in m and "4896" in m for s, m in faults if s == "032_3_1")


def test_megc2019_composite_counts(megc_full):
    with pytest.raises(ManifestError, match="028_4_1"):  # SAMM's known apex faults stop the default build
        build_manifest("megc2019", megc_full, on_problem="error")
    df = build_manifest("megc2019", megc_full, on_problem="fix")
    assert len(df) == 442 and len(set(zip(df["dataset"], df["subject"]))) == 68
    counts = {d: len(g) for d, g in df.groupby("dataset")}
    assert counts == {"casme2": 145, "samm": 133, "smic_hs": 164}
    mask = load_motion_mask(megc_full, df.iloc[0]["subject"], df.iloc[0]["sample"], df.iloc[0]["dataset"])
    assert mask.shape == first_frame(megc_full, df.iloc[0]["path"]).shape[:2]


# ------------------------------------------------------------------------------- SAMM, SMIC, CAS(ME)^3


def test_samm_release_is_grey_and_wide_with_the_sheet_form(tmp_path):
    root = write_release("samm", tmp_path / "SAMM", small=True, scale=0.25, progress=False)
    check_release("samm", root)
    df = build_manifest("samm", root, strict=False, on_problem="error")  # small: only the planted faults are problems
    assert {p.sample for p in df.attrs["problems"]} == {"028_4_1", "032_3_1"}
    assert all(p.startswith("SAMM/") for p in df["path"])
    frame = first_frame(root, df.iloc[0]["path"])
    assert frame.shape == (272, 510)  # grey, 2040×1088 scaled by 0.25
    sheet = load_workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx")["MICRO_ONLY"]
    assert sheet["A15"].value == f"{int(df.iloc[0]['subject']):03d}" and sheet["G15"].value == "=SUM(F15-D15)+1"
    row = df.iloc[0]
    assert load_motion_mask(root, row["subject"], row["sample"]).shape == frame.shape


@pytest.mark.parametrize("names", ["s1", "s01"])
def test_smic_hs_release_has_no_sheet_and_class_folders(tmp_path, names):
    out = tmp_path / "SMIC"
    assert (
        cli_main(["synthme", "--as", "smic_hs", str(out), "--small", "--scale", "0.2", "--smic-names", names, "-q"])
        == 0
    )
    check_release("smic_hs", out)
    assert not list(out.rglob("*.xlsx"))
    clip = next(out.glob(f"HS/{'s01' if names == 's01' else 's1'}/micro/negative/*_ne_01"))
    assert clip.name == ("s01_ne_01" if names == "s01" else "s1_ne_01")
    assert all(f.name.startswith("image") and f.suffix == ".bmp" for f in clip.iterdir())
    # masks are keyed by the canonical clip id whichever spelling is on disk
    assert load_motion_mask(out, "s01", "s01_ne_01").shape == first_frame(out, str(clip.relative_to(out))).shape[:2]


def test_casme3a_release_plants_seven_faulty_rows(tmp_path):
    root = write_release("casme3a", tmp_path / "C3", scale=0.05, progress=False)
    check_release("casme3a", root, "--counts")
    df = build_manifest("casme3a", root, strict=False, on_problem="error")
    assert len(df) == 860 and df["subject"].nunique() == 94
    assert len({(p.subject, p.sample) for p in df.attrs["problems"]}) == 7
    assert (df["offset"] == 0).sum() == 3 and (df["onset"] > df["offset"]).sum() == 5
    assert (df["emotion"] == "others").sum() == 170  # three of them written "Others"
    row = df.iloc[0]
    assert load_motion_mask(root, row["subject"], row["sample"]).shape == first_frame(root, row["path"]).shape[:2]


# ----------------------------------------------------------------------------------- writing contract


def test_same_arguments_return_at_once_and_foreign_folders_are_refused(tmp_path):
    root = write_release("smic_hs", tmp_path / "r", small=True, scale=0.2, progress=False)
    stamp = (root / "synthme_truth" / "release.json").stat().st_mtime_ns
    assert write_release("smic_hs", root, small=True, scale=0.2, progress=False) == root
    assert (root / "synthme_truth" / "release.json").stat().st_mtime_ns == stamp
    with pytest.raises(ReleaseExistsError, match="not this emulated release"):
        write_release("smic_hs", root, small=True, scale=0.3, progress=False)
    with pytest.raises(ValueError, match="unknown release kind"):
        write_release("casme", tmp_path / "x", progress=False)
    assert cli_main(["synthme", "--as", "samm", str(root), "--small", "-q"]) == 2  # user error, one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no build folder left beside it


# ------------------------------------------------------------- the builders on the emulated releases (issue 10 §2)


def test_megc2019_release_composite_is_the_rule_the_counts_and_the_listed_fixes(megc_full, tmp_path, capsys):
    from merkit.data.datasets import build_megc2019, problems_table

    df = build_megc2019(megc_full, on_problem="fix")
    per = {
        part: (len(g), g["subject"].nunique(), g["label"].value_counts().sort_index().tolist())
        for part, g in df.groupby("dataset")
    }
    assert per == {
        "casme2": (145, 24, [88, 32, 25]),
        "samm": (133, 28, [92, 26, 15]),
        "smic_hs": (164, 16, [70, 51, 43]),
    }
    table = problems_table(df)
    excluded = table[table["action"] == "excluded"]
    assert len(excluded) == 2 and set(excluded["dataset"]) == {"casme2"}  # the no-usable-apex rule, not a list
    fixed = table[table["action"] == "fixed"]
    assert {"028_4_1", "032_3_1"} <= set(fixed["sample"]) and set(fixed["dataset"]) == {"samm"}
    gt = tmp_path / "gt.csv"
    assert cli_main(["composite", str(megc_full), "--on-problem", "fix", "--write", str(gt)]) == 0
    assert cli_main(["composite", str(megc_full), "--on-problem", "fix", "--check", str(gt)]) == 0
    assert "442 clip(s) agree, 0 disagree" in capsys.readouterr().out


def test_megc2019_release_with_the_2019_casme2_sheet_names_the_three_changed_clips(megc_full):
    from merkit.data.datasets import build_megc2019

    part = megc_full / "CASME2"
    old = build_manifest("casme2", part)
    new = build_manifest("casme2", part, annotation="CASME2-coding-20190701.xlsx")
    moved = new.merge(old, on=["subject", "sample"], suffixes=("_2019", "_2014"))
    moved = moved[moved["emotion_2019"] != moved["emotion_2014"]]
    with pytest.raises(ManifestError) as error:
        build_megc2019(megc_full, annotations={"casme2": "CASME2-coding-20190701.xlsx"}, on_problem="fix")
    text = str(error.value)
    assert "3 clip(s) change class" in text and "expected 145 samples, built 148" in text
    for subject, sample in zip(moved["subject"], moved["sample"]):
        assert f"sub{subject}/{sample} (sadness -> surprise: out -> surprise)" in text


@pytest.mark.parametrize("names", ["s1", "s01"])
def test_smic_hs_release_builds_from_folders_to_canonical_ids(tmp_path, names):
    root = write_release("smic_hs", tmp_path / "SMIC", small=True, scale=0.2, smic_names=names, progress=False)
    df = build_manifest("smic_hs", root, "smic_3class")
    assert df["subject"].str.fullmatch(r"s\d{2}").all() and df["sample"].str.fullmatch(r"s\d{2}_(ne|po|sur)_\d+").all()
    assert df["apex_estimated"].all() and (df["onset"] < df["apex"]).all() and (df["apex"] < df["offset"]).all()
    assert "s01_ne_01" in set(df["sample"])
    mask = load_motion_mask(root, "s01", "s01_ne_01")
    assert mask.shape == first_frame(root, df.set_index("sample").loc["s01_ne_01", "path"]).shape[:2]


def test_casme3a_release_error_names_each_faulty_row_and_fix_leaves_none(tmp_path):
    from merkit.data.datasets import problems_table

    root = write_release("casme3a", tmp_path / "C3", small=True, scale=0.05, progress=False)
    with pytest.raises(ManifestError) as error:
        build_manifest("casme3a", root, on_problem="error")
    faulty = {(p.subject, p.sample) for p in error.value.problems}
    assert faulty and all("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx row " in p.message for p in error.value.problems)
    df = build_manifest("casme3a", root, "casme3a_3class", on_problem="fix")  # strict: nothing left
    fixed = problems_table(df)
    assert {(s, c) for s, c in zip(fixed["subject"], fixed["sample"])} == faulty
    assert fixed["detail"].str.contains("our assumption").all()
    dropped = build_manifest("casme3a", root, on_problem="drop")
    assert not faulty & set(zip(dropped["subject"], dropped["sample"]))
