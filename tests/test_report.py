"""merkit.report: the run report (index.html), `merkit report`, `merkit compare` (bad inputs included), and the
page rendered in a real headless browser."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers_browser import assert_not_blank, find_browser, image_check, screenshot
from helpers_report import make_run

from merkit.cli import main
from merkit.report import CompareError, compare_runs, comparison_table, write_report


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r"src='data:image/png;base64,([^']+)'", page)]


def _merkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``merkit ARGS`` typed in ``cwd`` (a separate process: the exit code and stderr are what a user sees)."""
    return subprocess.run([sys.executable, "-m", "merkit.cli", *args], capture_output=True, text=True, cwd=cwd)


def _one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one ``merkit: error:`` line of a command that failed with ``code`` and printed no traceback."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("merkit: error:")]
    assert len(errors) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return errors[0]


def _section(page: str, anchor: str) -> str:
    found = re.search(rf"<section id='{anchor}'>(.*?)</section>", page, re.S)
    assert found, f"no section {anchor!r}"
    return found.group(1)


# ------------------------------------------------------------------------------------------------ the report


def test_report_shows_every_part_of_a_full_run(tmp_path: Path):
    run = tmp_path / "run"
    metrics = make_run(run, variants=("meranet_small:none", "stcnn"), problems=True)
    page = write_report(run).read_text()
    uf1, interval = metrics["pooled"]["uf1"], metrics["ci"]["uf1"]
    headline = _section(page, "headline")
    assert f"{uf1:.3f}" in headline and f"[{interval['low']:.3f}, {interval['high']:.3f}]" in headline
    assert "synthme" in _section(page, "scores")
    variants = _section(page, "variants")
    assert "stcnn" in variants and "meranet_small:none" in variants
    none_ci = json.loads((run / "compare" / "meranet_small_none" / "metrics.json").read_text())["ci"]["uf1"]
    assert f"[{none_ci['low']:.3f}, {none_ci['high']:.3f}]" in variants  # the interval comes from the variant's run
    for anchor in ("confusion", "subjects", "explain", "training", "data", "config", "other"):
        assert _images(_section(page, anchor)) or anchor in ("config",), anchor
    data = _section(page, "data")
    assert "data_problems.csv" in data and "frame 46 missing" in data and "dropped" in data
    config = _section(page, "config")
    assert "train.seed" in config and "env.json" in config
    images = _images(page)
    assert len(images) == page.count("<img ")
    assert all(image.startswith(b"\x89PNG") for image in images)
    assert "05_extra" in _section(page, "other")  # a figure the report does not know still shows


def test_report_of_an_empty_or_broken_run_is_still_written(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "pipeline_params.yaml").write_text("run_dir: empty\n")  # a pipeline before its first notebook
    page = write_report(empty).read_text()
    assert "No <code>metrics.json</code>" in page and "<img" not in page
    broken = tmp_path / "broken"
    make_run(broken, variants=("stcnn",), figures=False)
    (broken / "config.json").write_text("{not json")
    (broken / "per_subject.csv").write_text("subject\n01\n")  # no accuracy column: that section cannot draw
    with pytest.warns(UserWarning, match="Per-subject"):
        page = write_report(broken).read_text()
    assert "could not be drawn" in _section(page, "subjects")
    assert "UF1" in _section(page, "headline")


def test_report_shows_attention_per_module_with_what_the_scores_mean(tmp_path: Path):
    run = tmp_path / "run"
    make_run(run, figures=False)
    page = write_report(run).read_text()
    assert "explain_attention_modules" not in page and "pointing game" not in page.lower()
    modules = pd.DataFrame(
        {
            "module": ["stage1.attention", "stage2.attention", "<b>head</b>"],
            "grid": ["8x8", "4x4", "1x1"],
            "auc": [0.81, 0.64, 0.5],
            "auc_lo": [0.75, 0.58, 0.5],
            "auc_hi": [0.86, 0.7, 0.5],
            "pointing": [0.9, 0.55, 0.1],
            "pointing_tolerance": [1, 1, 1],
            "gate_offset": [0.2, 0.3, 0.9],  # a column the report does not know: shown as it is
        }
    )
    modules.to_csv(run / "explain_attention_modules.csv", index=False)
    pd.DataFrame({"method": ["attention", "random"], "mass_in_region": [0.4, 0.1], "auc": [0.8, 0.5]}).to_csv(
        run / "explain_summary.csv", index=False
    )
    explain = _section(write_report(run).read_text(), "explain")
    for column in modules.columns:
        assert f"<th>{column}</th>" in explain
    assert "<td>stage1.attention</td>" in explain and "<td>0.810</td>" in explain and "<td>8x8</td>" in explain
    assert "&lt;b&gt;head&lt;/b&gt;" in explain and "<b>head" not in explain  # text from the run is never markup
    words = " ".join(explain.split())
    assert "0.5 is chance" in words and "offset and (positive) scale do not change it" in words
    assert "share of clips whose map peak falls inside the region" in words
    assert "tolerance: 1, column <code>pointing_tolerance</code>" in words
    assert "fair score for signed attributions only" in words
    assert "AUC is the probability" in words  # explain_summary.csv has an auc column: its paragraph says what it is


def test_comparison_table_reads_intervals_from_the_variant_runs(tmp_path: Path):
    run = tmp_path / "run"
    make_run(run, variants=("meranet_small:none",))
    table = comparison_table(run)
    variant = json.loads((run / "compare" / "meranet_small_none" / "metrics.json").read_text())
    assert list(table["variant"]) == ["meranet_small (this run)", "meranet_small:none"]
    assert table.loc[1, "uf1_low"] == pytest.approx(variant["ci"]["uf1"]["low"])
    assert comparison_table(tmp_path / "nothing_here") is None


def test_merkit_report_rebuilds_the_page(tmp_path: Path, capsys):
    run = tmp_path / "run"
    make_run(run)
    assert main(["report", str(run)]) == 0
    assert (run / "index.html").is_file() and str(run / "index.html") in capsys.readouterr().out
    first = (run / "index.html").read_text()
    assert main(["report", str(run)]) == 0  # its own page is rebuilt
    assert (run / "index.html").read_text() != "" and "merkit report" in first
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_merkit_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path):
    mine = tmp_path / "w"
    mine.mkdir()
    (mine / "index.html").write_text("<h1>mine</h1>\n")
    before = (mine / "index.html").stat()
    line = _one_line_error(_merkit("report", "w", cwd=tmp_path))
    assert "w is not a merkit run directory" in line and "config.json" in line
    assert (mine / "index.html").read_text() == "<h1>mine</h1>\n"
    assert (mine / "index.html").stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in mine.iterdir()) == ["index.html"]  # no temporary file left either
    (tmp_path / "emptydir").mkdir()
    line = _one_line_error(_merkit("report", "emptydir", cwd=tmp_path))
    assert "emptydir is not a merkit run directory" in line
    assert list((tmp_path / "emptydir").iterdir()) == []


def test_merkit_report_leaves_a_foreign_index_page_in_a_run_directory(tmp_path: Path):
    run = tmp_path / "run"
    make_run(run, figures=False)
    (run / "index.html").write_text("<h1>my notes on this run</h1>\n")
    line = _one_line_error(_merkit("report", "run", cwd=tmp_path))
    assert str(Path("run") / "index.html") in line and "not written by merkit report" in line
    assert (run / "index.html").read_text() == "<h1>my notes on this run</h1>\n"


@pytest.mark.slow
def test_the_report_renders_in_a_real_browser(tmp_path: Path):
    browser = find_browser()
    run = tmp_path / "run"
    make_run(run, variants=("stcnn",), problems=True)
    page = write_report(run)
    loaded = image_check(page, browser)
    assert loaded["total"] == page.read_text().count("<img ") > 5 and loaded["broken"] == []
    assert_not_blank(screenshot(page, tmp_path / "shot.png", browser))


def test_the_browser_check_sees_a_broken_image(tmp_path: Path):
    browser = find_browser()
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>text</p><img src='missing.png' alt='gone'></body></html>")
    assert image_check(page, browser) == {"total": 1, "broken": ["gone"]}


# ------------------------------------------------------------------------------------------------ compare


def test_compare_lists_runs_with_intervals_differences_and_seed_spread(tmp_path: Path):
    runs = []
    for model in ("meranet_small", "stcnn"):
        for seed in (0, 1):
            runs.append(tmp_path / f"{model}_{seed}")
            make_run(runs[-1], model=model, seed=seed, figures=False)
    result = compare_runs(runs, tmp_path / "out")
    table = pd.read_csv(result.csv)
    assert list(table["run"]) == [run.name for run in runs]
    assert {"model.name", "train.seed"} <= set(table.columns) and "data.dataset" not in table.columns
    for run, (_, row) in zip(runs, table.iterrows()):
        metrics = json.loads((run / "metrics.json").read_text())
        assert row["uf1"] == pytest.approx(metrics["pooled"]["uf1"])
        assert row["uf1_low"] == pytest.approx(metrics["ci"]["uf1"]["low"])
        timings = json.loads((run / "timings.json").read_text())["fold_seconds"]
        assert row["wall_s"] == pytest.approx(sum(timings.values()))  # no notebooks: the folds' own times
    seeds = pd.read_csv(tmp_path / "out" / "compare_seeds.csv")
    stcnn = seeds[seeds["model.name"] == "stcnn"].iloc[0]
    assert stcnn["n_runs"] == 2
    assert stcnn["uf1_mean"] == pytest.approx(table.loc[table["model.name"] == "stcnn", "uf1"].mean())
    assert stcnn["uf1_sd"] == pytest.approx(table.loc[table["model.name"] == "stcnn", "uf1"].std())
    page = result.html.read_text()
    assert "mean ± sd" in page and "model.name" in page and result.png.stat().st_size > 1000


def test_compare_marks_runs_of_different_datasets(tmp_path: Path):
    make_run(tmp_path / "a", dataset="synthme", figures=False)
    make_run(tmp_path / "b", dataset="casme2", figures=False)
    result = compare_runs([tmp_path / "a", tmp_path / "b"], tmp_path)
    assert sorted(result.table["dataset"]) == ["casme2", "synthme"]
    assert "different datasets" in result.html.read_text()
    assert {"uf1 casme2", "uf1 synthme"} <= set(result.table.columns)


def test_compare_reports_and_skips_a_run_without_metrics(tmp_path: Path, capsys):
    make_run(tmp_path / "good", figures=False)
    (tmp_path / "unfinished").mkdir()
    assert main(["compare", str(tmp_path / "good"), str(tmp_path / "unfinished"), "--out", str(tmp_path / "c")]) == 0
    captured = capsys.readouterr()
    assert "unfinished" in captured.err and "no metrics.json" in captured.err
    assert list(pd.read_csv(tmp_path / "c" / "compare.csv")["run"]) == ["good"]
    assert "unfinished" in (tmp_path / "c" / "compare.html").read_text()
    with pytest.raises(CompareError, match="nothing to compare"):
        compare_runs([tmp_path / "unfinished"], tmp_path / "c")
    assert main(["compare", str(tmp_path / "unfinished")]) == 2


def test_merkit_compare_says_a_metrics_json_is_corrupt(tmp_path: Path):
    make_run(tmp_path / "good", figures=False)
    make_run(tmp_path / "cut", figures=False)
    whole = (tmp_path / "cut" / "metrics.json").read_text()
    (tmp_path / "cut" / "metrics.json").write_text(whole[: len(whole) // 2])  # a write cut short
    line = _one_line_error(_merkit("compare", "cut", cwd=tmp_path))
    assert f"{Path('cut') / 'metrics.json'} is corrupt: not JSON" in line and "line" in line
    assert "no metrics.json" not in line
    assert not (tmp_path / "compare.csv").exists()
    result = _merkit("compare", "good", "cut", "--out", "c", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert f"merkit: skipped {Path('cut') / 'metrics.json'} is corrupt" in result.stderr
    assert list(pd.read_csv(tmp_path / "c" / "compare.csv")["run"]) == ["good"]


def test_merkit_compare_refuses_a_score_that_is_not_a_number(tmp_path: Path):
    make_run(tmp_path / "text", figures=False)
    metrics = json.loads((tmp_path / "text" / "metrics.json").read_text())
    metrics["pooled"]["uf1"] = "0.61 (best)"
    (tmp_path / "text" / "metrics.json").write_text(json.dumps(metrics))
    line = _one_line_error(_merkit("compare", "text", cwd=tmp_path))
    assert str(Path("text") / "metrics.json") in line and "pooled.uf1 is '0.61 (best)', not a number" in line
    assert not (tmp_path / "compare.csv").exists()  # no row of NaN either
