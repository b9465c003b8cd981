"""Dataset builders from fixture sheets with the official structure and quirks (invented rows): counts,
quirks, every bad input with an error naming the sample, the MEGC2019 composite rule and its ground-truth file."""

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers_sheets import (
    Row,
    copy_rows,
    full_casme2_rows,
    full_samm_rows,
    full_smic_rows,
    make_frames,
    use_manifests,
    write_casme2_sheet,
    write_casme2_tree,
    write_casme3a_sheet,
    write_megc_tree,
    write_samm_tree,
    write_smic_tree,
)

from merkit.data.datasets import (
    BUILDERS,
    build_manifest,
    build_megc2019,
    list_datasets,
    list_label_maps,
    load_spec,
    manifests_dir,
    problems_table,
    read_megc_ground_truth,
    write_megc_ground_truth,
)
from merkit.data.io import ClipReadError, frame_number, read_sample
from merkit.data.manifest import MANIFEST_COLUMNS, ManifestError, validate_manifest


def _casme2_small() -> list[Row]:
    return [
        Row(1, "EP02_01f", 46, 48, 50, "happiness", action_units="4+L10"),
        Row("01", "EP03_02", 10, "/", 12, "disgust", action_units="R12"),
        Row(2, "EP01_01", 8, 9, 11, "others", action_units=4),
        Row("02", "EP05_03", 100, 101, 102, "fear", action_units="1+2+4"),
        Row(3, "EP07_01", 5, 6, 7, "repression", action_units=None),
    ]


@pytest.fixture
def small(tmp_path, monkeypatch):
    """Dataset files without the real expected counts, for the small fixtures."""
    use_manifests(
        tmp_path,
        monkeypatch,
        casme2={"expected": None},
        samm={"expected": None},
        smic_hs={
            "expected": None,
            "label_maps": {
                "smic_3class": {
                    "classes": ["negative", "positive", "surprise"],
                    "map": {"negative": "negative", "positive": "positive", "surprise": "surprise"},
                    "drop": [],
                }
            },
        },
    )
    return tmp_path


# ---------------------------------------------------------------------------------------------- registry
def test_every_dataset_and_protocol_is_declared():
    assert {"casme2", "samm", "smic_hs", "casme3a", "megc2019", "synthme"} <= set(list_datasets())
    assert "casme2_5class" in list_label_maps("casme2") and "samm_5class" in list_label_maps("samm")
    assert list_label_maps("smic_hs") == ["smic_3class"] and list_label_maps("megc2019") == ["megc2019_3class"]
    assert list_label_maps("synthme") == ["synthme_3class"]


def test_frame_name_examples_in_the_dataset_files_parse():
    for dataset in list_datasets():
        for name, number in (load_spec(dataset).raw.get("layout", {}).get("examples") or {}).items():
            assert frame_number(name) == number, (dataset, name)


def test_manifests_folder_is_next_to_the_package_unless_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv("MERKIT_MANIFESTS", raising=False)
    assert (manifests_dir() / "casme2.yaml").is_file()
    monkeypatch.setenv("MERKIT_MANIFESTS", str(tmp_path))
    assert manifests_dir() == tmp_path and list_datasets() == []


def test_unknown_dataset_and_protocol_are_clear_errors(tmp_path):
    with pytest.raises(ManifestError, match="unknown dataset 'casme9'.*casme2"):
        build_manifest("casme9", tmp_path)
    with pytest.raises(ManifestError, match="unknown label map 'casme2_7class'.*casme2_5class"):
        build_manifest("casme2", tmp_path, "casme2_7class")


def test_a_protocol_that_forgets_an_emotion_is_rejected(tmp_path, monkeypatch):
    use_manifests(
        tmp_path,
        monkeypatch,
        casme2={"label_maps": {"p": {"classes": ["happiness"], "map": {"happiness": "happiness"}}}},
    )
    with pytest.raises(ManifestError, match="neither mapped nor dropped"):
        load_spec("casme2")


def test_the_builder_kind_is_declared_in_each_dataset_file():
    kinds = {dataset: load_spec(dataset).builder for dataset in list_datasets()}
    assert set(kinds.values()) <= set(BUILDERS), kinds
    assert {d for d, kind in kinds.items() if kind == "sheet"} >= {"casme2", "samm", "casme3a", "smic_e", "synthme"}
    assert kinds["smic_hs"] == "smic_hs" and kinds["megc2019"] == "megc2019"
    assert load_spec("smic_e").raw["sample_spelling"] == "megc2019"


def test_dataset_files_with_the_former_per_dataset_builder_names_still_build(tmp_path, monkeypatch):
    # A $MERKIT_MANIFESTS folder written before the kinds: builder: casme2 / smic_e, no sample_spelling.
    old_smic_e = {k: v for k, v in load_spec("smic_e").raw.items() if k != "sample_spelling"}
    use_manifests(
        tmp_path,
        monkeypatch,
        casme2={"expected": None, "builder": "casme2"},
        smic_e={**old_smic_e, "builder": "smic_e"},
    )
    assert load_spec("casme2").builder == "sheet"
    assert load_spec("smic_e").builder == "sheet" and load_spec("smic_e").raw["sample_spelling"] == "megc2019"
    root = write_casme2_tree(tmp_path / "CASME2", _casme2_small())
    df = build_manifest("casme2", root)
    assert df["subject"].tolist() == ["01", "01", "02", "02", "03"] and df.attrs["problems"] == []


def test_an_unknown_builder_kind_or_sample_spelling_is_an_error_naming_the_file(tmp_path, monkeypatch):
    folder = use_manifests(tmp_path, monkeypatch, casme2={"builder": "casme9"}, samm={"sample_spelling": "klingon"})
    with pytest.raises(ManifestError, match=r"casme2\.yaml: unknown builder 'casme9'.*'sheet'"):
        build_manifest("casme2", tmp_path)
    with pytest.raises(ManifestError, match=rf"{folder / 'samm.yaml'}: unknown sample_spelling 'klingon'"):
        build_manifest("samm", tmp_path)


# ---------------------------------------------------------------------------------------------- CASME II
def test_casme2_2014_sheet_quirks(small):
    root = write_casme2_tree(small / "CASME2", _casme2_small())
    df = build_manifest("casme2", root)
    assert list(df.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert df["subject"].tolist() == ["01", "01", "02", "02", "03"]
    assert df["path"].tolist()[0] == "CASME2_RAW_selected/sub01/EP02_01f"
    assert df["apex"].isna().tolist() == [False, True, False, False, False]  # "/" -> <NA>
    assert df["action_units"].tolist() == [("4", "L10"), ("R12",), ("4",), ("1", "2", "4"), ()]
    assert df["label"].isna().all() and df.attrs["label_map"] is None
    assert "objective_class" not in df.columns
    assert df.attrs["problems"] == []


def test_casme2_5class_labels_and_drops(small):
    root = write_casme2_tree(small / "CASME2", _casme2_small())
    df = build_manifest("casme2", root, "casme2_5class")
    classes = df.attrs["classes"]
    assert classes == ["happiness", "disgust", "repression", "surprise", "others"]
    assert "fear" not in set(df["emotion"])  # dropped by the protocol
    assert [classes[i] for i in df["label"]] == df["emotion"].tolist()


def _with_old_keys(folder: Path, dataset: str) -> Path:
    """Rewrite ``<dataset>.yaml`` in ``folder`` as written before issue 11 (``protocols:``, ``default_protocol:``)."""
    file = folder / f"{dataset}.yaml"
    text = file.read_text()
    assert "\nlabel_maps:" in text
    file.write_text(
        text.replace("\nlabel_maps:", "\nprotocols:").replace("\ndefault_label_map:", "\ndefault_protocol:")
    )
    _touch_later(file)
    return file


def _touch_later(file: Path) -> None:
    """Move the file's mtime a second on: specs are cached by mtime, and a rewrite within the clock's tick
    would otherwise read as unchanged."""
    later = file.stat().st_mtime_ns + 10**9
    os.utime(file, ns=(later, later))


def test_a_dataset_file_with_the_old_protocols_key_is_refused_naming_the_new_key(small):
    file = _with_old_keys(small / "manifests", "casme2")
    with pytest.raises(ManifestError, match=rf"{file.name}: rename the key\(s\): 'protocols' is now 'label_maps'"):
        load_spec("casme2")


def test_casme2_2019_version_is_chosen_by_annotation(small):
    rows_2014 = _casme2_small()
    rows_2019 = copy_rows(rows_2014)
    rows_2019[0].emotion, rows_2019[0].objective_class = "others", 7  # the versions disagree on a few rows
    for r in rows_2019:
        r.objective_class = r.objective_class or 1
    root = write_casme2_tree(small / "CASME2", rows_2014)
    write_casme2_sheet(root / "CASME2-coding-20190701.xlsx", rows_2019, version="2019")
    default = build_manifest("casme2", root)
    newer = build_manifest("casme2", root, annotation="CASME2-coding-20190701.xlsx")
    assert default.attrs["annotation"].endswith("20140508.xlsx")
    assert (default["emotion"][0], newer["emotion"][0]) == ("happiness", "others")
    assert newer["objective_class"].tolist() == ["7", "1", "1", "1", "1"]


def test_casme2_cropped_release_uses_reg_img_frames(small):
    root = write_casme2_tree(small / "CASME2", _casme2_small(), release="Cropped", images=True)
    df = build_manifest("casme2", root)
    assert df["path"][0] == "Cropped/sub01/EP02_01f"
    clip = read_sample(df.iloc[0], root)
    assert clip.numbers.tolist() == [46, 47, 48, 49, 50]
    # frames are selected by number: the pixel value drawn is the frame number
    np.testing.assert_allclose(clip.frames.mean(axis=(1, 2, 3)), [46, 47, 48, 49, 50], atol=1)


def test_casme2_copy_with_both_releases_reads_the_cropped_one(small):
    raw_only = write_casme2_tree(small / "raw", _casme2_small())
    assert not build_manifest("casme2", raw_only)["cropped"].any()
    both = write_casme2_tree(small / "both", _casme2_small())  # CASME2_RAW_selected/ ...
    write_casme2_tree(both, _casme2_small(), release="Cropped")  # ... and Cropped/ beside it
    df = build_manifest("casme2", both)
    assert df["path"].str.startswith("Cropped/").all()
    assert df["cropped"].all() and df.attrs["layout_root"] == "Cropped"


def test_casme2_full_size_counts_are_checked(tmp_path):
    root = write_casme2_tree(tmp_path / "CASME2", full_casme2_rows())
    df = build_manifest("casme2", root)  # real dataset file: expects 255 samples, 26 subjects
    assert (len(df), df["subject"].nunique()) == (255, 26)
    short = write_casme2_tree(tmp_path / "short", full_casme2_rows()[:-1])
    with pytest.raises(ManifestError, match="expected 255 samples, built 254"):
        build_manifest("casme2", short)


# ---------------------------------------------------------------------------------------------- bad inputs
def test_missing_folder_unknown_emotion_and_bad_apex_name_their_samples(small):
    rows = _casme2_small()
    rows[2].emotion = "joy"
    rows[4].apex = 99
    root = write_casme2_tree(small / "CASME2", rows)
    shutil.rmtree(root / "CASME2_RAW_selected" / "sub01" / "EP03_02")
    with pytest.raises(ManifestError) as error:
        build_manifest("casme2", root)
    text = str(error.value)
    assert "casme2/01/EP03_02: frame folder not found" in text
    assert "casme2/02/EP01_01: unknown emotion 'joy'" in text
    assert "casme2/03/EP07_01: apex 99 lies outside onset..offset 5..7" in text
    assert len(error.value.problems) == 3


def test_non_strict_build_returns_the_manifest_and_the_problems(small):
    rows = _casme2_small()
    rows[1].onset = "ten"
    root = write_casme2_tree(small / "CASME2", [r for r in rows if r.sample != "EP03_02"])
    write_casme2_sheet(root / "CASME2-coding-20140508.xlsx", rows)
    df = build_manifest("casme2", root, strict=False)
    assert len(df) == 4 and "EP03_02" not in set(df["sample"])
    [problem] = df.attrs["problems"]
    assert (problem.subject, problem.sample) == ("01", "EP03_02")
    assert "row 3: onset 'ten' is not a frame number" in problem.message


def test_a_duplicated_sheet_row_is_named_by_its_spreadsheet_row_numbers(small, capsys):
    from merkit.cli import main

    rows = _casme2_small()
    rows.append(copy_rows([rows[1]])[0])  # the user pasted EP03_02 again at the bottom: Excel row 7
    root = write_casme2_tree(small / "CASME2", rows)
    code = main(["prepare", "--dataset", "casme2", "--data-root", str(root), "--crop", "dataset", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    problems = [line for line in err.splitlines() if line.strip().startswith("- ")]
    assert problems == ["  - casme2/01/EP03_02: duplicate sample (CASME2-coding-20140508.xlsx rows 3 and 7)"]
    df = build_manifest("casme2", root, on_problem="drop")  # both rows left out, the log names the rows too
    assert "EP03_02" not in set(df["sample"])
    assert "rows 3 and 7" in " ".join(problems_table(df)["detail"])


def test_missing_or_wrong_sheet_is_a_clear_error(small):
    (small / "empty").mkdir()
    with pytest.raises(ManifestError, match="no annotation sheet under .*CASME2-coding-20140508.xlsx"):
        build_manifest("casme2", small / "empty")
    smic_root = write_smic_tree(small / "SMIC", full_smic_rows()[:3], sheet=True)
    with pytest.raises(ManifestError, match="no header row with .*OnsetFrame.*wrong sheet"):
        build_manifest("casme2", smic_root, annotation="SMIC-HS-E_annotation.xlsx")
    samm_root = write_samm_tree(small / "SAMM", full_samm_rows()[:3], sheet_name="Sheet1")
    with pytest.raises(ManifestError, match=r"sheet 'MICRO_ONLY' not found in .*\['Sheet1'\]"):
        build_manifest("samm", samm_root)
    (small / "empty" / "CASME2-coding-20140508.xlsx").write_text("not a workbook")
    with pytest.raises(ManifestError, match="cannot open .* as an xlsx workbook"):
        build_manifest("casme2", small / "empty")


def test_unreadable_frames_fail_at_read_time_naming_the_sample(small):
    root = write_casme2_tree(small / "CASME2", _casme2_small())  # empty frame files: present, not images
    df = build_manifest("casme2", root)  # validation checks presence only
    with pytest.raises(ClipReadError, match=r"casme2/01/EP02_01f: unreadable image .*img46\.jpg"):
        read_sample(df.iloc[0], root)


# ---------------------------------------------------------------------------------------------- SAMM
def test_samm_preamble_padding_and_apex_outside_range(small):
    rows = full_samm_rows()[:6]
    rows[3].apex = rows[3].offset + 40  # as in some copies
    root = write_samm_tree(small / "SAMM", rows, extra_sheets=["FACS_CODES"])
    df = build_manifest("samm", root, strict=False)
    assert df["subject"].tolist()[:2] == ["006", "007"] and set(df["subject"].str.len()) == {3}
    assert df["path"][0] == f"006/{rows[0].sample}"
    assert df["emotion"][0] == "anger" and df["objective_class"][0] == "1"
    [problem] = df.attrs["problems"]
    assert problem.sample == rows[3].sample and "lies outside onset..offset" in problem.message
    with pytest.raises(ManifestError, match=rf"samm/{rows[3].sample[:3]}/{rows[3].sample}: apex"):
        build_manifest("samm", root)


def test_samm_5class(small):
    root = write_samm_tree(small / "SAMM", full_samm_rows())
    df = build_manifest("samm", root, "samm_5class")
    assert set(df["emotion"]) == {"anger", "contempt", "happiness", "surprise", "other"}
    assert df["label"].value_counts().sort_index().tolist() == [57, 12, 26, 15, 26]


# ---------------------------------------------------------------------------------------------- SMIC-HS
def test_smic_hs_is_built_from_its_folders_with_an_estimated_apex(tmp_path):
    root = write_smic_tree(tmp_path / "SMIC", full_smic_rows())  # no sheet, as released
    df = build_manifest("smic_hs", root, "smic_3class")  # real file: 164/16 and 70/51/43
    assert set(df["subject"]) == {f"s{n:02d}" for n in (1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20)}
    first = df.iloc[0]
    assert first["subject"] == "s01" and first["sample"].startswith("s01_")  # the MEGC2019 spelling
    assert first["path"] == f"HS/s1/micro/{first['emotion']}/s1_{first['sample'].split('_', 1)[1]}"  # as on disk
    # onset/offset are the first/last frame on disk; the apex is the middle one, flagged as an estimate
    assert (first["onset"], first["apex"], first["offset"]) == (100000, 100001, 100002)
    assert df["apex_estimated"].all() and "middle frame" in df.attrs["apex_method"]
    assert df.groupby("emotion").size().to_dict() == {"negative": 70, "positive": 51, "surprise": 43}


def test_smic_hs_spellings_s1_and_s01_give_the_same_canonical_ids(small):
    rows = full_smic_rows()[:12]
    short = build_manifest("smic_hs", write_smic_tree(small / "short", rows))
    padded = build_manifest(
        "smic_hs", write_smic_tree(small / "padded", rows, subject_folder="s{n:02d}", clip_folder="s{n:02d}_{rest}")
    )
    key = ["subject", "sample", "emotion", "onset", "offset"]
    assert short[key].values.tolist() == padded[key].values.tolist()
    assert padded["path"][0].startswith("HS/s01/micro/") and short["path"][0].startswith("HS/s1/micro/")


def test_smic_hs_cropped_copy_is_preferred_and_read_with_reg_image_frames(small):
    rows = full_smic_rows()[:5]
    root = write_smic_tree(small / "SMIC", rows, release="SMIC_all_raw/HS")
    write_smic_tree(root, rows, release="SMIC_all_cropped/HS", frame="reg_image{n}.bmp")
    df = build_manifest("smic_hs", root)
    assert df["path"].str.startswith("SMIC_all_cropped/HS/").all() and df["cropped"].all()


def test_smic_hs_unknown_class_folder_is_an_error_naming_the_folder(small):
    rows = full_smic_rows()[:4]
    root = write_smic_tree(small / "SMIC", rows)
    make_frames(root / "HS" / "s1" / "micro" / "Happy" / "s1_ha_01", range(5, 8), "image{n}.bmp")
    with pytest.raises(
        ManifestError, match=r"smic_hs/s01/s01_ha_01: class folder .*s1/micro/Happy has an unknown name 'Happy'"
    ):
        build_manifest("smic_hs", root)
    dropped = build_manifest("smic_hs", root, on_problem="drop")
    assert len(dropped) == 4 and "s01_ha_01" in set(problems_table(dropped)["sample"])


def test_smic_hs_never_reads_the_smic_e_sheet_which_is_its_own_dataset(small):
    rows = full_smic_rows()[:6]
    root = write_smic_tree(small / "SMIC", rows, sheet=True)
    with pytest.raises(ManifestError, match="SMIC-HS has no annotation sheet.*smic_e"):
        build_manifest("smic_hs", root, annotation="SMIC-HS-E_annotation.xlsx")
    for r in rows:  # SMIC-E clips (assumed layout <subject>/<clip>/)
        make_frames(
            root / "HS_long" / f"s{int(r.subject_cell.strip('s')):02d}" / r.sample,
            range(r.onset, r.offset + 1),
            "image{n}.bmp",
        )
    extended = build_manifest("smic_e", root, "smic_e_3class")
    assert len(extended) == 6 and extended["apex"].isna().all() and extended["sample"][0].startswith("s01_")


# ---------------------------------------------------------------------------------------------- CAS(ME)^3 A
def test_casme3a_samples_share_a_recording_folder(tmp_path):
    rows = [
        Row("spNO.1", "a", 120, 125, 130, "happy", action_units="12"),
        Row("spNO.1", "a", 300, 302, 306, "disgust", action_units="4+L10"),
        Row("spNO.2", "c", 40, 41, 44, "others", action_units="R14"),
    ]
    root = tmp_path / "casme3"
    write_casme3a_sheet(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", rows)
    make_frames(root / "part_A" / "spNO.1" / "a" / "color", range(100, 320), "{n}.jpg")
    make_frames(root / "part_A" / "spNO.2" / "c" / "color", range(0, 60), "{n}.jpg")
    df = build_manifest("casme3a", root, "casme3a_3class")
    assert df["sample"].tolist() == ["a_120", "a_300"]
    assert df["path"].tolist() == ["part_A/spNO.1/a/color"] * 2
    assert df["label"].tolist() == [1, 0]


# ---------------------------------------------------------------------------------------------- SynthME
def test_synthme_builds_through_the_casme2_path_with_videos(tmp_path):
    from merkit.data.synthetic import SynthMEConfig, generate_synthme, render_clip

    config = SynthMEConfig(
        n_subjects=3, clips_per_subject=3, n_frames=8, size=32, video_subjects=(3,), frame_format="png"
    )
    generate_synthme(tmp_path, config)
    df = build_manifest("synthme", tmp_path, "synthme_3class")
    assert len(df) == 9 and df.attrs["classes"] == ["negative", "positive", "surprise"]
    assert df["path"].str.endswith(".mp4").tolist() == [False] * 6 + [True] * 3
    mapping = {"disgust": 0, "happiness": 1, "surprise": 2}
    assert df["label"].tolist() == [mapping[e] for e in df["emotion"]]
    row = df.iloc[0]
    clip = read_sample(row, tmp_path)
    drawn = render_clip(config, row["subject"], row["sample"])
    keep = (drawn.numbers >= row["onset"]) & (drawn.numbers <= row["offset"])
    np.testing.assert_array_equal(clip.numbers, drawn.numbers[keep])
    np.testing.assert_array_equal(clip.frames, drawn.frames[keep])  # png: bit-exact


# ---------------------------------------------------------------------------------------------- MEGC2019
@pytest.fixture(scope="module")
def megc_root(tmp_path_factory) -> Path:
    return write_megc_tree(tmp_path_factory.mktemp("megc"))


def test_megc2019_composite_rule_and_counts(megc_root):
    df = build_megc2019(megc_root)
    assert df.attrs["dataset"] == "megc2019" and df.attrs["classes"] == ["negative", "positive", "surprise"]
    assert len(df) == 442 and len(set(zip(df["dataset"], df["subject"]))) == 68
    per = df.groupby("dataset").agg(n=("sample", "size"), subjects=("subject", "nunique"))
    assert per.to_dict("index") == {
        "casme2": {"n": 145, "subjects": 24},
        "samm": {"n": 133, "subjects": 28},
        "smic_hs": {"n": 164, "subjects": 16},
    }
    assert df["label"].value_counts().sort_index().tolist() == [250, 109, 83]
    rule = {
        "repression": 0,
        "anger": 0,
        "contempt": 0,
        "disgust": 0,
        "fear": 0,
        "sadness": 0,
        "negative": 0,
        "happiness": 1,
        "positive": 1,
        "surprise": 2,
    }
    assert df["label"].tolist() == [rule[e] for e in df["emotion"]]
    assert not ({"others", "other"} & set(df["emotion"]))
    casme = df[df["dataset"] == "casme2"]
    assert not {("04", "EP12_01f"), ("05", "EP09_05f")} & set(zip(casme["subject"], casme["sample"]))
    assert df["path"].str.split("/").str[0].tolist() == ["CASME2"] * 145 + ["SAMM"] * 133 + ["SMIC"] * 164
    assert validate_manifest(df, megc_root) == []  # the composite reads from the composite root
    assert build_manifest("megc2019", megc_root, "megc2019_3class")["sample"].tolist() == df["sample"].tolist()
    pd.testing.assert_frame_equal(build_megc2019(megc_root, "megc2019_3class"), df)
    assert df.attrs["label_map"] == "megc2019_3class"


def test_megc2019_count_check_catches_a_changed_rule_input(tmp_path):
    samm = full_samm_rows()
    next(r for r in samm if r.emotion == "Other").emotion = "Anger"  # one more negative
    root = write_megc_tree(tmp_path, samm=samm)
    df = build_megc2019(root, strict=False)
    messages = [str(p) for p in df.attrs["problems"]]
    assert any("expected 442 samples, built 443" in m for m in messages)
    assert any(m.startswith("samm: megc2019_3class part samm: expected 133 samples, built 134") for m in messages)
    with pytest.raises(ManifestError, match="negative': 250"):
        build_megc2019(root)


def test_megc_ground_truth_round_trip(megc_root, tmp_path):
    df = build_megc2019(megc_root)
    path = write_megc_ground_truth(df, tmp_path / "gt.csv")
    raw = path.read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"" and len(lines) == 443 and b"\n" not in raw.replace(b"\r\n", b"")
    assert lines[0].decode().split(",")[0] == "casme2" and lines[0].decode().split(",")[1].startswith("sub")
    assert any(line.startswith(b"smic,s01,s01_") for line in lines) and any(
        line.startswith(b"samm,6,006_") for line in lines
    )
    back = read_megc_ground_truth(path)
    assert (
        back[["dataset", "subject", "sample", "label"]].values.tolist()
        == df[["dataset", "subject", "sample", "label"]].astype(object).values.tolist()
    )


def test_megc_ground_truth_errors_name_the_line(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_bytes(b"smic,s1,s1_ne_01,0\r\nfoo,1,x,1\r\n")
    with pytest.raises(ManifestError, match="gt.csv line 2: unknown database 'foo'"):
        read_megc_ground_truth(path)
    path.write_bytes(b"samm,6,006_1_2,5\r\n")
    with pytest.raises(ManifestError, match="samm/006/006_1_2: gt.csv line 1: label '5'"):
        read_megc_ground_truth(path)


# ---------------------------------------------------------------------------------------------- errata, exclusions
def test_errata_apply_only_where_the_sheet_still_holds_the_wrong_value(tmp_path, monkeypatch):
    errata = [
        {"subject": "01", "sample": "EP02_01f", "field": "emotion", "from": "happiness", "to": "others", "why": "test"},
        {"subject": "02", "sample": "EP01_01", "field": "emotion", "from": "surprise", "to": "disgust", "why": "test"},
    ]
    exclusions = [{"subject": "03", "sample": "EP07_01", "why": "test"}]
    use_manifests(tmp_path, monkeypatch, casme2={"expected": None, "errata": errata, "exclusions": exclusions})
    root = write_casme2_tree(tmp_path / "CASME2", _casme2_small())
    with pytest.raises(ManifestError, match=r"casme2/01/EP02_01f: .*row 2: emotion 'happiness' is a known fault"):
        build_manifest("casme2", root, on_problem="error")  # changes nothing and names the known fault
    df = build_manifest("casme2", root, on_problem="fix")
    assert df.set_index("sample").loc["EP02_01f", "emotion"] == "others"
    assert df.set_index("sample").loc["EP01_01", "emotion"] == "others"  # sheet holds others, not surprise: untouched
    assert len(df.attrs["errata_applied"]) == 1 and "'happiness' -> 'others'" in df.attrs["errata_applied"][0]
    [fixed] = problems_table(df).to_dict("records")
    assert (fixed["sample"], fixed["field"], fixed["action"]) == ("EP02_01f", "emotion", "fixed")
    assert "EP07_01" not in set(df["sample"]) and df.attrs["excluded"] == ["03/EP07_01"]


def test_a_sheet_with_only_its_header_gives_an_empty_manifest_and_a_count_problem(tmp_path):
    root = tmp_path / "CASME2"
    write_casme2_sheet(root / "CASME2-coding-20140508.xlsx", [])
    df = build_manifest("casme2", root, "casme2_5class", strict=False)
    assert len(df) == 0 and list(df.columns) == list(MANIFEST_COLUMNS)
    assert [p.message for p in df.attrs["problems"]] == [
        "the full dataset: expected 255 samples, built 0",
        "the full dataset: expected 26 subjects, built 0",
    ]
