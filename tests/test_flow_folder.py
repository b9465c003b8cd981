"""Community flow folders as a data source: listing -> manifest -> flow-only store -> protocols."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from merkit.config import DataConfig, ModelConfig, ProtocolConfig, RunConfig, TrainConfig
from merkit.data.flow import COMPOSITE_LISTING_COLUMNS, export_flow_release, normalise_flow_image
from merkit.data.manifest import ManifestError
from merkit.evaluation.splits import ProtocolError
from merkit.prepare import prepare_data
from merkit.training.runner import run_protocol

# Invented: which "dataset" each tiny SynthME subject plays in the exported composite listing.
PARTS = {"01": "casme2", "02": "casme2", "03": "samm", "04": "smic_hs"}


@pytest.fixture(scope="module")
def release_store(tmp_path_factory):
    """A tiny SynthME clip store with 28×28 onset→apex flow (4 subjects × 3 clips, one per class)."""
    from merkit.data.synthetic import SynthMEConfig

    base = tmp_path_factory.mktemp("flowfolder")
    data = DataConfig(synthme_n_subjects=4, synthme_clips_per_subject=3, synthme_n_frames=8, synthme_size=32)
    from merkit.data.preprocess import PreprocessConfig

    assert SynthMEConfig(**data.synthme_kwargs())  # the SynthME knobs are valid
    prepared = prepare_data(
        data, PreprocessConfig(frames=8, size=16, color="grey"), cache_dir=base / "cache", flow="dis", progress=False
    )
    return prepared.store, base


@pytest.fixture(scope="module")
def exported(release_store):
    """The store's flow exported as a community folder with an HTNet-style composite listing."""
    store, base = release_store
    index = store.index.copy()
    index["dataset"] = index["subject"].map(PARTS)
    folder = base / "folder"
    listing = export_flow_release(folder, np.asarray(store.flow, dtype=np.float32), index)
    return folder, listing, index


def flow_data(folder, listing) -> DataConfig:
    return DataConfig(dataset="flow_folder", data_root=str(folder), label_map="megc2019_3class", listing=str(listing))


def test_export_writes_spaced_names_and_the_composite_header(exported):
    folder, listing, index = exported
    assert (folder / f"{index['subject'].iloc[0]}_{index['sample'].iloc[0]} .png").is_file()
    header = listing.read_text().splitlines()[0]
    assert (
        header
        == ", ".join(COMPOSITE_LISTING_COLUMNS)
        == "dataset, sub, filename_o, label, apex, imagename, sub_filename"
    )
    assert "smic" in listing.read_text() and "smic_hs" not in listing.read_text()  # the ground truth's database names


def test_round_trip_gives_the_same_ids_labels_and_images(release_store, exported, tmp_path):
    store, _ = release_store
    folder, listing, index = exported
    prepared = prepare_data(flow_data(folder, listing), None, cache_dir=tmp_path, progress=False)
    manifest = prepared.manifest
    assert list(manifest["subject"]) == list(store.index["subject"].astype(str))
    assert list(manifest["sample"]) == list(store.index["sample"].astype(str))
    assert list(manifest["label"]) == list(store.index["label"])
    assert list(manifest["dataset"]) == list(index["dataset"])  # "smic" read back as the kit's smic_hs
    assert prepared.classes == ["negative", "positive", "surprise"]
    flow_store = prepare_data(flow_data(folder, listing), {}, cache_dir=tmp_path, progress=False).store
    assert flow_store.clips is None and flow_store.flow.shape == (12, 28, 28, 3) and len(flow_store) == 12
    assert flow_store.flow_source == "folder" and flow_store.config is None
    for k in range(12):  # within the PNG's 8-bit rounding (and the float16 storage)
        expected = normalise_flow_image(np.asarray(store.flow[k], dtype=np.float32))
        assert np.abs(np.asarray(flow_store.flow[k], dtype=np.float32) - expected).max() <= 0.5 / 255 + 1e-3
    again = prepare_data(flow_data(folder, listing), {}, cache_dir=tmp_path, progress=False).store
    assert again.path == flow_store.path  # cached: a second call is a lookup


def test_listing_naming_a_missing_file_names_the_line_sample_and_file(exported, tmp_path):
    folder, listing, _ = exported
    lines = listing.read_text().splitlines()
    broken = tmp_path / "broken.csv"
    broken.write_text(
        "\n".join(lines[:3] + ["samm,03,EP99_missing,0,,03_EP99_missing,03_EP99_missing"] + lines[3:]) + "\n"
    )
    with pytest.raises(
        ManifestError, match=r"broken\.csv line 4: subject '03' sample 'EP99_missing'.*03_EP99_missing \.png"
    ):
        prepare_data(flow_data(folder, broken), None, cache_dir=tmp_path, progress=False)


def test_any_csv_with_subject_sample_label_columns_works_and_bad_labels_are_named(exported, tmp_path):
    folder, _, index = exported
    plain = tmp_path / "plain.csv"
    pd.DataFrame(
        {
            "Subject": index["subject"],
            "Sample": index["sample"],
            "Label": index["label"].map({0: "negative", 1: "positive", 2: "surprise"}),
        }
    ).to_csv(plain, index=False)
    manifest = prepare_data(flow_data(folder, plain), None, cache_dir=tmp_path, progress=False).manifest
    assert set(manifest["dataset"]) == {"flow_folder"} and list(manifest["label"]) == list(index["label"])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"subject": index["subject"], "sample": index["sample"], "label": ["7"] * len(index)}).to_csv(
        bad, index=False
    )
    with pytest.raises(ManifestError, match=r"bad\.csv line 2: label '7' is not one of"):
        prepare_data(flow_data(folder, bad), None, cache_dir=tmp_path, progress=False)


def flow_run_config(evaluation: str, model: str = "ststnet") -> RunConfig:
    return RunConfig(
        data=DataConfig(dataset="flow_folder", label_map="megc2019_3class"),
        model=ModelConfig(name=model),
        train=TrainConfig(epochs=2, batch_size=8, lr=1e-3, device="cpu", precision="fp32", augment=False),
        protocol=ProtocolConfig(name=evaluation),
    )


@pytest.mark.parametrize("evaluation, n_folds", [("loso", 4), ("megc2019", 4)])
def test_flow_folder_store_runs_loso_and_megc2019_with_a_per_dataset_breakdown(exported, tmp_path, evaluation, n_folds):
    folder, listing, _ = exported
    store = prepare_data(flow_data(folder, listing), {}, cache_dir=tmp_path / "cache", progress=False).store
    predictions = run_protocol(flow_run_config(evaluation), store, tmp_path / "run", progress=False)
    assert len(predictions) == 12 and predictions["fold"].nunique() == n_folds
    assert set(predictions["fold"]) == {f"{PARTS[s]}/{s}" for s in PARTS}  # several datasets: keys qualified
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["per_dataset"]) == {"casme2", "samm", "smic_hs"}
    assert metrics["per_dataset"]["casme2"]["n"] == 6 and metrics["protocol"] == evaluation


def test_a_clip_model_on_a_flow_folder_store_is_refused_before_any_fold(exported, tmp_path):
    folder, listing, _ = exported
    store = prepare_data(flow_data(folder, listing), {}, cache_dir=tmp_path / "cache", progress=False).store
    config = flow_run_config("loso", "meranet_small")
    with pytest.raises(ProtocolError, match=r"reads clips.*holds only flow images.*ststnet"):
        run_protocol(config, store, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_prepare_flow_folder_builds_the_flow_only_store(exported, tmp_path, capsys):
    from merkit.cli import main

    folder, listing, _ = exported
    code = main(
        ["prepare", "--flow-folder", str(folder), "--listing", str(listing), "--cache-dir", str(tmp_path), "-q"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "dataset: flow_folder (12 clips, 4 subjects)" in out and "flow images (12, 28, 28, 3) from the folder" in out
    assert "negative 4, positive 4, surprise 4" in out
    broken = tmp_path / "broken.csv"
    broken.write_text(listing.read_text() + "samm,03,EP99,0,,x,x\n")
    code = main(["prepare", "--flow-folder", str(folder), "--listing", str(broken), "--cache-dir", str(tmp_path), "-q"])
    err = capsys.readouterr().err
    assert code != 0 and "line 14" in err and "EP99" in err and "03_EP99 .png" in err


def test_cli_prepare_with_a_latin1_listing_names_the_file_and_the_encoding(exported, tmp_path, capsys):
    from merkit.cli import main

    folder, listing, _ = exported
    lines = listing.read_text().splitlines()
    latin1 = tmp_path / "listing_latin1.csv"  # saved by a spreadsheet in its legacy encoding, with a note column
    text = "\n".join([lines[0] + ", note", *(line + ",café" for line in lines[1:])]) + "\n"
    latin1.write_bytes(text.encode("latin-1"))
    args = ["prepare", "--flow-folder", str(folder), "--cache-dir", str(tmp_path), "-q", "--listing"]
    assert main([*args, str(latin1)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"merkit: error: {latin1} line 2: not UTF-8 text (byte 0xe9" in err and "save the listing as UTF-8" in err
    bom = tmp_path / "listing_excel_utf8.csv"  # Excel's "CSV UTF-8": a byte-order mark, then UTF-8
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert main([*args, str(bom)]) == 0
    assert "dataset: flow_folder (12 clips, 4 subjects)" in capsys.readouterr().out


def test_export_without_apex_writes_the_release_with_empty_apex_cells(release_store, tmp_path):
    store, _ = release_store
    index = store.index.drop(columns=["apex", "apex_used"])  # the docstring says apex is optional
    flows = np.asarray(store.flow, dtype=np.float32)
    listing = export_flow_release(tmp_path / "folder", flows, index)
    rows = [line.split(",") for line in listing.read_text().splitlines()[1:]]
    assert len(rows) == 12 and all(row[4] == "" for row in rows)
    assert len(list((tmp_path / "folder").glob("* .png"))) == 12
    prepared = prepare_data(flow_data(tmp_path / "folder", listing), None, cache_dir=tmp_path / "c", progress=False)
    assert list(prepared.manifest["sample"]) == list(index["sample"])


def test_a_failed_export_leaves_no_half_written_folder(release_store, tmp_path):
    from merkit.data.flow import FlowError

    store, _ = release_store
    flows = np.asarray(store.flow, dtype=np.float32)
    unlabelled = store.index.copy()
    unlabelled["label"] = unlabelled["label"].astype(object)
    unlabelled.loc[5, "label"] = None
    sample = f"subject {unlabelled['subject'][5]!r} sample {unlabelled['sample'][5]!r}: no label"
    with pytest.raises(FlowError, match=sample):
        export_flow_release(tmp_path / "new", flows, unlabelled)
    assert not (tmp_path / "new").exists()  # checked before anything was written

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "readme.txt").write_text("my notes")
    index = store.index
    (folder / f"{index['subject'][7]}_{index['sample'][7]} .png").mkdir()  # the 8th image cannot be written
    with pytest.raises(OSError):
        export_flow_release(folder, flows, index)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["readme.txt", f"{index['subject'][7]}_{index['sample'][7]} .png"]
    )


def test_flow_method_for_stores_tvl1_only_when_a_flow_model_needs_it():
    from merkit.prepare import flow_method_for

    assert flow_method_for("meranet_small") == ""
    assert flow_method_for("ststnet") == "tvl1" and flow_method_for("offapexnet", "dis") == "dis"
    assert flow_method_for("meranet_small", "", "synthme", "meranet_small:none,ststnet") == "tvl1"
    assert flow_method_for("ststnet", "tvl1", "flow_folder") == ""  # a flow folder's flow is given


def test_model_overrides_give_a_flow_model_no_clip_sizes_and_refuse_attention():
    from merkit.config import ConfigError, model_overrides

    assert model_overrides("meranet_small", frames=8, size=32, attention="none") == {
        "frames": 8,
        "size": 32,
        "attention": "none",
    }
    assert (
        model_overrides("ststnet", frames=8, size=32) == {} and model_overrides("offapexnet", frames=8, size=32) == {}
    )
    with pytest.raises(ConfigError, match="'ststnet' has no attention parameter"):
        model_overrides("ststnet", attention="channel")


def test_published_recipe_fixes_the_authors_training_and_keeps_seed_and_device():
    from merkit.config import ConfigError, train_config

    train = train_config("published", epochs=3, lr=1e-3, seed=5, device="cpu")
    assert (train.optimizer, train.weight_decay, train.lr, train.batch_size, train.epochs) == (
        "adamw",
        0.0,
        5e-5,
        256,
        800,
    )
    assert train.schedule == "none" and not train.class_weighted and not train.augment and not train.select_best
    assert train.seed == 5 and train.device == "cpu"
    assert train_config("", epochs=3).epochs == 3
    with pytest.raises(ConfigError, match="unknown training recipe 'paper'"):
        train_config("paper")
