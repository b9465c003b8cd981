"""The MEGC2019 composite on emulated full-count roots (per-part class rule, the no-usable-apex rule, the
2014 sheet, counts), its ground-truth file and `merkit composite --write/--check`; known faults under
on_problem error / fix / drop (SAMM errata in both circulating variants, CAS(ME)^3 rule repairs) and
data_problems.csv; bad inputs that must name the file and the sample."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from helpers_sheets import (
    Row,
    casme2_2019_rows,
    full_casme2_rows,
    full_samm_rows,
    make_frames,
    use_manifests,
    write_casme2_sheet,
    write_casme2_tree,
    write_casme3a_sheet,
    write_megc_tree,
    write_samm_tree,
)

from merkit.cli import EXIT_FAILED, main
from merkit.data.datasets import (
    PROBLEM_COLUMNS,
    build_manifest,
    build_megc2019,
    problems_table,
    read_megc_ground_truth,
    write_problems,
)
from merkit.data.manifest import ManifestError


@pytest.fixture(scope="module")
def megc_root(tmp_path_factory) -> Path:
    return write_megc_tree(tmp_path_factory.mktemp("megc"))


# ---------------------------------------------------------------------------------------------- composite
def test_full_count_composite_is_442_clips_of_68_subjects_by_the_per_part_rule(megc_root):
    df = build_megc2019(megc_root)
    assert (len(df), len(set(zip(df["dataset"], df["subject"])))) == (442, 68)
    per = {
        part: (len(g), g["subject"].nunique(), g["label"].value_counts().sort_index().tolist())
        for part, g in df.groupby("dataset")
    }
    assert per == {
        "casme2": (145, 24, [88, 32, 25]),
        "samm": (133, 28, [92, 26, 15]),
        "smic_hs": (164, 16, [70, 51, 43]),
    }
    casme, samm = df[df["dataset"] == "casme2"], df[df["dataset"] == "samm"]
    assert not {"fear", "sadness", "others"} & set(casme["emotion"])  # CASME II: negative = disgust + repression
    assert {"fear", "sadness", "contempt", "anger"} <= set(samm["emotion"])  # SAMM: they are negative
    assert set(samm.loc[samm["emotion"].isin(["fear", "sadness"]), "label"]) == {0}


def test_no_usable_apex_rule_leaves_out_exactly_the_two_casme2_clips_and_logs_them(megc_root):
    df = build_megc2019(megc_root)
    excluded = problems_table(df)
    excluded = excluded[excluded["action"] == "excluded"]
    assert sorted(zip(excluded["subject"], excluded["sample"])) == [("04", "EP12_01f"), ("05", "EP09_05f")]
    reasons = sorted(d.split(" (rule")[0] for d in excluded["detail"])
    assert reasons[0] == "no usable apex: apex = onset = 23" and reasons[1] == "no usable apex: apex missing"
    smic = df[df["dataset"] == "smic_hs"]
    assert smic["apex_estimated"].all() and len(smic) == 164  # the estimated apex never triggers the rule


def test_smic_clip_of_one_frame_keeps_its_estimated_apex_out_of_the_rule(tmp_path):
    from helpers_sheets import full_smic_rows

    smic = full_smic_rows()
    smic[0].offset = smic[0].onset  # one frame: the estimated apex equals the onset
    root = write_megc_tree(tmp_path, smic=smic)
    assert len(build_megc2019(root)) == 442


def test_the_2019_casme2_sheet_gives_a_count_error_naming_the_three_changed_clips(tmp_path):
    rows_2014 = full_casme2_rows()
    rows_2019, changed = casme2_2019_rows(rows_2014)
    root = write_megc_tree(tmp_path, casme2=rows_2014)
    write_casme2_sheet(root / "CASME2" / "CASME2-coding-20190701.xlsx", rows_2019, version="2019")
    assert len(build_megc2019(root)) == 442  # the 2014 sheet is preferred when both are there
    with pytest.raises(ManifestError) as error:
        build_megc2019(root, annotations={"casme2": "CASME2-coding-20190701.xlsx"})
    text = str(error.value)
    assert "part casme2: expected {'negative': 88, 'positive': 32, 'surprise': 25} class counts" in text
    assert "3 clip(s) change class" in text
    for clip in changed:
        assert f"{clip} (sadness -> surprise: out -> surprise)" in text
    (root / "CASME2" / "CASME2-coding-20140508.xlsx").unlink()  # only the sheet the owners send today
    with pytest.raises(
        ManifestError, match=r"(?s)read from CASME2-coding-20190701.xlsx.*subject 24.*expected 145 samples, built 148"
    ):
        build_megc2019(root)


def test_composite_write_and_check_find_a_planted_disagreement(megc_root, tmp_path, capsys):
    gt = tmp_path / "gt.csv"
    assert main(["composite", str(megc_root), "--write", str(gt)]) == 0
    raw = gt.read_bytes()
    assert raw.count(b"\r\n") == 442 and b"\n" not in raw.replace(b"\r\n", b"")
    lines = raw.decode().splitlines()
    assert lines[0].startswith("casme2,sub01,") and any(line.startswith("samm,6,006_") for line in lines)
    assert any(line.startswith("smic,s01,s01_") for line in lines) and {line[-1] for line in lines} == {"0", "1", "2"}
    assert main(["composite", str(megc_root), "--check", str(gt)]) == 0
    assert "442 clip(s) agree, 0 disagree" in capsys.readouterr().out

    planted = [line.split(",") for line in lines]
    database, subject, video, label = planted[5]
    planted[5][3] = str((int(label) + 1) % 3)
    dropped = planted.pop(200)
    planted.append(["smic", "s1", "s1_po_99", "1"])  # a user's file may spell SMIC s1 / s1_po_99
    mine = tmp_path / "mine.csv"
    mine.write_bytes("".join(",".join(f) + "\r\n" for f in planted).encode())
    assert main(["composite", str(megc_root), "--check", str(mine)]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "440 clip(s) agree, 3 disagree" in out
    names = ["negative", "positive", "surprise"]
    assert (
        f"casme2/{subject[3:]}/{video}: label differs (built {names[int(label)]}, ground truth "
        f"{names[(int(label) + 1) % 3]})"
    ) in out
    assert f"/{dropped[2]}: only in built" in out
    assert "smic_hs/s01/s01_po_99: only in ground truth" in out


def test_ground_truth_reader_joins_both_smic_spellings(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_bytes(b"smic,s1,s1_ne_01,0\r\nsmic,s01,s01_po_02,1\r\nsamm,6,006_1_2,2\r\ncasme2,sub01,EP02_01f,1\r\n")
    gt = read_megc_ground_truth(path)
    assert gt[["subject", "sample"]].values.tolist() == [
        ["s01", "s01_ne_01"],
        ["s01", "s01_po_02"],
        ["006", "006_1_2"],
        ["01", "EP02_01f"],
    ]


# ---------------------------------------------------------------------------------------------- SAMM errata
def _samm_with_faults(variant: int) -> list[Row]:
    """Full SAMM rows with the three clips the errata name, apex as in one of the circulating copies."""
    rows = full_samm_rows()
    subject_28 = [r for r in rows if r.sample.startswith("028_")]
    subject_32 = [r for r in rows if r.sample.startswith("032_")]
    a, b, c = subject_28[0], subject_32[0], subject_32[1]
    a.sample, a.onset, a.offset, a.apex = "028_4_1", 1050, 1134, (1143, 1113)[variant]
    b.sample, b.onset, b.offset, b.apex = "032_3_1", 4896, 4990, (1930, 4930)[variant]
    c.sample, c.onset, c.offset, c.apex = "032_3_2", 5100, 5160, 5120
    for r in rows:  # the invented names of other clips must not collide with these three
        if r.sample in ("028_4_1", "032_3_1", "032_3_2") and r not in (a, b, c):
            r.sample += "0"
    return rows


@pytest.mark.parametrize("variant", [0, 1])
def test_samm_errata_in_both_circulating_variants(tmp_path, variant):
    root = write_samm_tree(tmp_path / "SAMM", _samm_with_faults(variant))
    with pytest.raises(ManifestError) as error:
        build_manifest("samm", root, on_problem="error")
    text = str(error.value)
    assert "samm/028/028_4_1: SAMM_Micro_FACS_Codes_v2.xlsx row " in text
    assert f"apex {(1143, 1113)[variant]} is a known fault (declared erratum -> 1105" in text
    assert "samm/032/032_3_1: " in text and f"apex {(1930, 4930)[variant]} is a known fault" in text
    df = build_manifest("samm", root, on_problem="fix")
    apex = dict(zip(df["sample"], df["apex"]))
    assert (apex["028_4_1"], apex["032_3_1"], apex["032_3_2"]) == (1105, 4945, 5130)
    fixed = problems_table(df)
    assert sorted(fixed["sample"]) == ["028_4_1", "032_3_1", "032_3_2"] and set(fixed["action"]) == {"fixed"}
    assert fixed["detail"].str.contains("public toolkit's flow-based correction").all()
    assert fixed["detail"].str.contains("unverified by us").all()


def test_samm_drop_leaves_the_faulty_clips_out_and_lists_them(tmp_path):
    root = write_samm_tree(tmp_path / "SAMM", _samm_with_faults(0))
    df = build_manifest("samm", root, on_problem="drop")
    assert len(df) == 157 and not {"028_4_1", "032_3_1"} & set(df["sample"])
    table = problems_table(df)
    dropped = table[table["action"] == "dropped"]
    assert sorted(set(dropped["sample"])) == ["028_4_1", "032_3_1"] and set(dropped["field"]) == {"apex"}
    assert "expected 159 samples, built 157" in " ".join(table.loc[table["action"] == "counts differ", "detail"])
    path = write_problems(df, tmp_path / "run" / "data_problems.csv")
    with path.open(newline="") as stream:
        read = list(csv.DictReader(stream))
    assert list(read[0]) == list(PROBLEM_COLUMNS) and len(read) == len(table)


def test_a_copy_that_is_already_corrected_is_left_alone(tmp_path):
    rows = _samm_with_faults(0)
    for r in rows:
        r.apex = {"028_4_1": 1105, "032_3_1": 4945, "032_3_2": 5130}.get(r.sample, r.apex)
    root = write_samm_tree(tmp_path / "SAMM", rows)
    df = build_manifest("samm", root)  # on_problem=error: nothing to report
    assert problems_table(build_manifest("samm", root, on_problem="fix")).empty and len(df) == 159


# ---------------------------------------------------------------------------------------------- CAS(ME)^3
def _casme3a_root(tmp_path: Path, images: bool = False) -> Path:
    """Every cell text, as in the real file; three rows with the faults the v2 file has (kinds only)."""
    rows = [
        Row("spNO.1", "a", "120", "125", "130", "happy", action_units="12", objective_class="II"),
        Row("spNO.1", "a", "300", "302", "306", "disgust", action_units="4+L10", objective_class="I"),
        Row("spNO.1", "b", "60", "64", "50", "Others", action_units="R14", objective_class="VII"),  # onset > offset
        Row("spNO.2", "c", "40", "42", "0", "sad", action_units="1+4", objective_class="V"),  # offset 0
        Row("spNO.2", "c", "10", "30", "20", "surprise", action_units="1+2", objective_class="VI"),  # apex outside
        Row("spNO.2", "d", "5", "8", "12", "fear", action_units="4", objective_class="IV"),
    ]
    root = tmp_path / "casme3"
    write_casme3a_sheet(root / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", rows)
    for subject, recording, frames in (
        ("spNO.1", "a", range(100, 320)),
        ("spNO.1", "b", range(40, 80)),
        ("spNO.2", "c", range(0, 50)),
        ("spNO.2", "d", range(0, 20)),
    ):
        make_frames(root / "part_A" / subject / recording / "color", frames, "{n}.jpg", images=images, size=16)
    return root


def test_casme3a_error_names_each_faulty_row_with_the_file(tmp_path):
    root = _casme3a_root(tmp_path)
    with pytest.raises(ManifestError) as error:
        build_manifest("casme3a", root, on_problem="error")
    text = str(error.value)
    assert "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx" in text and len(error.value.problems) == 3
    assert "casme3a/spNO.1/b_60: cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx row 4: onset 60 is after offset 50" in text
    assert "casme3a/spNO.2/c_40: cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx row 5: offset is 0 (onset 40)" in text
    assert "casme3a/spNO.2/c_10: cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx row 6: apex 30 lies outside" in text
    assert "on_problem='fix' applies the declared rule" in text


def test_casme3a_fix_leaves_no_problem_and_labels_the_repairs_as_assumptions(tmp_path):
    root = _casme3a_root(tmp_path)
    df = build_manifest("casme3a", root, "casme3a_7class", on_problem="fix")
    rows = df.set_index("sample")
    assert (rows.loc["b_60", "onset"], rows.loc["b_60", "offset"]) == (50, 60)  # swapped
    assert rows.loc["b_60", "apex"] == 55  # then its apex 64 was outside: the middle
    assert rows.loc["c_40", "offset"] == 47  # onset + median length 7 of the rows without faults (10, 6, 7)
    assert rows.loc["c_10", "apex"] == 15
    table = problems_table(df)
    assert set(table["action"]) == {"fixed (rule)"} and table["detail"].str.contains("our assumption").all()
    assert sorted(set(table["sample"])) == ["b_60", "c_10", "c_40"] and df.attrs["problems"] == []


def test_casme3a_offset_zero_is_cut_at_the_last_frame_on_disk(tmp_path):
    root = _casme3a_root(tmp_path)
    shutil.rmtree(root / "part_A" / "spNO.2" / "c" / "color")
    make_frames(root / "part_A" / "spNO.2" / "c" / "color", range(0, 44), "{n}.jpg")
    df = build_manifest("casme3a", root, on_problem="fix")
    assert df.set_index("sample").loc["c_40", "offset"] == 43


def test_casme3a_drop_lists_what_it_dropped(tmp_path):
    df = build_manifest("casme3a", _casme3a_root(tmp_path), on_problem="drop")
    assert df["sample"].tolist() == ["a_120", "a_300", "d_5"]
    assert sorted(problems_table(df)["sample"]) == ["b_60", "c_10", "c_40"]


def test_unknown_on_problem_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match=r"on_problem must be one of \['error', 'fix', 'drop'\], got 'ignore'"):
        build_manifest("casme3a", _casme3a_root(tmp_path), on_problem="ignore")


# ---------------------------------------------------------------------------------------------- bad inputs
def test_a_sheet_with_an_extra_blank_column_is_still_read(tmp_path, monkeypatch):
    from openpyxl import load_workbook

    use_manifests(tmp_path, monkeypatch, casme2={"expected": None})
    rows = full_casme2_rows()[2:12]
    root = write_casme2_tree(tmp_path / "CASME2", rows)
    before = build_manifest("casme2", root)
    path = root / "CASME2-coding-20140508.xlsx"
    book = load_workbook(path)
    book.active.insert_cols(6)  # an empty column between ApexFrame and OffsetFrame (blank header, blank cells)
    book.save(path)
    after = build_manifest("casme2", root)
    assert after.equals(before)


def test_composite_drop_runs_and_lists_the_dropped_samm_clips(tmp_path):
    root = write_megc_tree(tmp_path, samm=_samm_with_faults(0))
    with pytest.raises(ManifestError, match="samm/028/028_4_1"):
        build_megc2019(root, on_problem="error")
    fixed = build_megc2019(root, on_problem="fix")
    assert len(fixed) == 442 and {"028_4_1", "032_3_1"} <= set(problems_table(fixed)["sample"])
    dropped = build_megc2019(root, on_problem="drop")
    table = problems_table(dropped)
    assert sorted(set(table.loc[table["action"] == "dropped", "sample"])) == ["028_4_1", "032_3_1"]
    assert not {"028_4_1", "032_3_1"} & set(dropped["sample"])
    assert (table["action"] == "counts differ").any()  # reported, not raised


# ---------------------------------------------------------------------------------------------- plumbing
def test_on_problem_reaches_prepare_data_and_data_problems_csv_is_written(tmp_path):
    from merkit.config import ConfigError, DataConfig
    from merkit.prepare import prepare_data

    root = _casme3a_root(tmp_path)
    data = DataConfig(dataset="casme3a", data_root=str(root), label_map="casme3a_7class", on_problem="fix")
    prepared = prepare_data(data, None, cache_dir=tmp_path / "cache", run_dir=tmp_path / "run")
    assert prepared.problems_file == tmp_path / "run" / "data_problems.csv"
    with prepared.problems_file.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted({r["sample"] for r in rows}) == ["b_60", "c_10", "c_40"] and {r["action"] for r in rows} == {
        "fixed (rule)"
    }
    with pytest.raises(ManifestError, match="offset is 0"):
        prepare_data(
            DataConfig(dataset="casme3a", data_root=str(root), label_map="", on_problem="error"),
            None,
            cache_dir=tmp_path / "cache",
        )
    with pytest.raises(ConfigError, match="on_problem must be one of"):
        DataConfig(on_problem="skip")


def test_merkit_prepare_on_problem_fix_prints_and_writes_what_it_fixed(tmp_path, capsys):
    root = _casme3a_root(tmp_path, images=True)
    code = main(
        [
            "prepare",
            "--dataset",
            "casme3a",
            "--data-root",
            str(root),
            "--label-map",
            "casme3a_7class",
            "--frames",
            "4",
            "--size",
            "8",
            "--crop",
            "center",
            "--on-problem",
            "fix",
            "--run-dir",
            str(tmp_path / "run"),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "dataset: casme3a (6 clips" in out
    assert "fixed (rule)  casme3a/spNO.2/c_40:" in out and (tmp_path / "run" / "data_problems.csv").is_file()
    assert main(["prepare", "--dataset", "casme3a", "--data-root", str(root), "--on-problem", "error", "-q"]) == 2
    assert "offset is 0" in capsys.readouterr().err


def test_pipeline_accepts_on_problem_for_every_notebook():
    from merkit.pipeline.run import check_parameters, resolve_notebooks

    notebooks = resolve_notebooks(["01_data", "02_train", "03_loso", "04_explain"], None)
    per_notebook = check_parameters({"on_problem": "fix"}, notebooks, {"on_problem"})
    assert [per_notebook[path].get("on_problem") for path in notebooks] == ["fix"] * 4
