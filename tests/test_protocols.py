"""protocols.py: split generators (pure pandas, fast) and the fold runner on a tiny SynthME."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from merkit.evaluation.splits import (
    MissingClassWarning,
    ProtocolError,
    fold_seed,
    group_kfold_splits,
    lodo_splits,
    loso_splits,
    make_splits,
    megc2019_splits,
)


def toy_index() -> pd.DataFrame:
    """Two datasets that share subject id '01' (ids are only unique within a dataset)."""
    rows = []
    for dataset, subjects in (("casme2", ["01", "02", "03"]), ("samm", ["006", "01"])):
        for s in subjects:
            for j in range(3):
                rows.append({"dataset": dataset, "subject": s, "sample": f"{s}_{j}", "label": j})
    index = pd.DataFrame(rows)
    index.attrs["classes"] = ["negative", "positive", "surprise"]
    return index


def check_partition(folds, n: int) -> None:
    tests = np.concatenate([f.test for f in folds])
    assert sorted(tests.tolist()) == list(range(n))  # every row held out exactly once
    for f in folds:
        assert set(f.train.tolist()).isdisjoint(f.test.tolist())
        assert len(f.train) + len(f.test) == n


def test_loso_on_one_dataset_keys_by_subject():
    index = toy_index().query("dataset == 'casme2'").reset_index(drop=True)
    folds = loso_splits(index)
    assert [f.key for f in folds] == ["01", "02", "03"]
    check_partition(folds, len(index))
    assert set(index.loc[folds[1].test, "subject"]) == {"02"}


def test_loso_and_megc_qualify_subjects_by_dataset():
    index = toy_index()
    for folds in (loso_splits(index), megc2019_splits(index)):
        assert [f.key for f in folds] == ["casme2/01", "casme2/02", "casme2/03", "samm/006", "samm/01"]
        check_partition(folds, len(index))
        held = index.loc[folds[0].test]
        assert set(zip(held["dataset"], held["subject"])) == {("casme2", "01")}


def test_lodo_holds_out_whole_datasets():
    index = toy_index()
    folds = lodo_splits(index)
    assert [f.key for f in folds] == ["casme2", "samm"]
    check_partition(folds, len(index))
    assert set(index.loc[folds[1].test, "dataset"]) == {"samm"}
    with pytest.raises(ProtocolError, match="at least 2 datasets"):
        lodo_splits(index.query("dataset == 'samm'"))


def test_group_kfold_keeps_subjects_whole_and_is_seeded():
    index = toy_index()
    folds = group_kfold_splits(index, k=2, seed=3)
    assert [f.key for f in folds] == ["k0", "k1"]
    check_partition(folds, len(index))
    keys = index["dataset"] + "/" + index["subject"]
    assert set(keys.iloc[folds[0].test]).isdisjoint(keys.iloc[folds[1].test])
    assert abs(len(folds[0].test) - len(folds[1].test)) <= 3  # balanced by clip count, 3 clips per subject
    again = group_kfold_splits(index, k=2, seed=3)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again))
    with pytest.raises(ProtocolError, match="k=9"):
        group_kfold_splits(index, k=9)


def test_fold_missing_a_class_in_training_is_reported_not_skipped():
    index = toy_index().query("dataset == 'casme2'").reset_index(drop=True)
    index.attrs["classes"] = ["negative", "positive", "surprise"]
    # only subject 02 has 'surprise': its fold trains without it
    index.loc[index["label"] == 2, "label"] = 0
    index.loc[(index["subject"] == "02") & (index["sample"] == "02_2"), "label"] = 2
    with pytest.warns(MissingClassWarning, match=r"fold '02'.*surprise"):
        folds = loso_splits(index)
    assert [f.key for f in folds] == ["01", "02", "03"]  # nothing skipped
    assert folds[1].missing_classes == ("surprise",)
    assert folds[0].missing_classes == ()


def test_missing_column_and_missing_labels_are_named():
    index = toy_index()
    with pytest.raises(ProtocolError, match=r"\['dataset'\]"):
        megc2019_splits(index.drop(columns="dataset"))
    with pytest.raises(ProtocolError, match=r"\['label'\]"):
        loso_splits(index.drop(columns="label"))
    unlabeled = index.astype({"label": "Int64"})
    unlabeled.loc[4, "label"] = pd.NA
    with pytest.raises(ProtocolError, match="casme2/02/02_1"):
        loso_splits(unlabeled)


def test_unknown_protocol_name_lists_the_known_ones():
    with pytest.raises(ProtocolError, match="unknown protocol 'losoo'.*loso, megc2019, lodo, group_kfold"):
        make_splits(toy_index(), "losoo")


def test_fold_seed_depends_on_seed_and_key_only():
    assert fold_seed(0, "01") == fold_seed(0, "01")
    assert len({fold_seed(0, "01"), fold_seed(0, "02"), fold_seed(1, "01"), fold_seed(0, "casme2/01")}) == 4
    assert 0 <= fold_seed(123, "samm/006") < 2**31


def test_no_warning_when_every_fold_has_every_class():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingClassWarning)
        loso_splits(toy_index())


# ------------------------------------------------------------------------------ the fold runner, end to end

import copy  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402

from merkit.config import ConfigError, ModelConfig, ProtocolConfig, RunConfig, TrainConfig  # noqa: E402
from merkit.training.runner import load_fold_model, run_protocol  # noqa: E402
from merkit.training.runs import CheckpointError, RunConfigMismatch  # noqa: E402

TINY_MODEL = dict(frames=8, size=16, widths=(4, 8, 8), reduction=2, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_synthme(tmp_path_factory):
    """SynthME with 4 subjects × 3 clips (one of each class), 8 frames: (root, manifest, folder for stores)."""
    from merkit.data.datasets import build_manifest
    from merkit.data.synthetic import SynthMEConfig, generate_synthme

    base = tmp_path_factory.mktemp("synthme")
    root = generate_synthme(
        base / "data",
        SynthMEConfig(n_subjects=4, clips_per_subject=3, n_frames=8, size=32, video_subjects=()),
        progress=False,
    )
    return root, build_manifest("synthme", root, "synthme_3class"), base


@pytest.fixture(scope="module")
def tiny_store(tiny_synthme):
    """The tiny SynthME preprocessed to grey 8×16×16 clips (no flow)."""
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import build_store

    root, manifest, base = tiny_synthme
    return build_store(
        manifest, root, PreprocessConfig(frames=8, size=16, color="grey"), base / "store", progress=False
    )


@pytest.fixture(scope="module")
def tiny_flow_store(tiny_synthme):
    """The same clips plus onset→apex (u, v, strain) 28×28 flow images (DIS: the fastest method)."""
    from merkit.data.flow import FlowConfig
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import build_store

    root, manifest, base = tiny_synthme
    return build_store(
        manifest,
        root,
        PreprocessConfig(frames=8, size=16, color="grey"),
        base / "store",
        flow=FlowConfig(method="dis", work_size=32, size=28),
        progress=False,
    )


def tiny_config(**train) -> RunConfig:
    train_kwargs = dict(epochs=1, batch_size=4, lr=3e-3, device="cpu", precision="fp32", seed=11)
    train_kwargs.update(train)
    return RunConfig(
        model=ModelConfig(name="meranet_small", overrides=dict(TINY_MODEL)),
        train=TrainConfig(**train_kwargs),
        protocol=ProtocolConfig(name="loso"),
        preprocess={"frames": 8, "size": 16, "color": "grey"},
    )


@pytest.fixture(scope="module")
def reference_run(tiny_store, tmp_path_factory):
    """An uninterrupted sequential LOSO run: (run directory, predictions)."""
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    predictions = run_protocol(tiny_config(), tiny_store, run_dir, progress=False)
    return run_dir, predictions


def test_loso_run_writes_predictions_metrics_and_fold_records(reference_run, tiny_store):
    run_dir, predictions = reference_run
    assert len(predictions) == 12
    assert list(predictions.columns[:6]) == ["dataset", "subject", "sample", "fold", "gt", "pred"]
    assert [c for c in predictions.columns if c.startswith("prob_")] == [
        "prob_negative",
        "prob_positive",
        "prob_surprise",
    ]
    assert (predictions["fold"] == predictions["subject"]).all()  # LOSO on one dataset: fold = held-out subject
    assert np.allclose(predictions.filter(like="prob_").sum(axis=1), 1.0, atol=1e-5)
    assert (
        predictions["gt"].to_numpy()
        == tiny_store.index.set_index(["subject", "sample"])
        .loc[list(zip(predictions["subject"], predictions["sample"])), "label"]
        .to_numpy()
    ).all()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_folds"] == 4 and metrics["protocol"] == "loso"
    assert metrics["folds_missing_classes"] == {}
    on_disk = pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str, "fold": str})
    assert on_disk["sample"].tolist() == predictions["sample"].tolist()
    for key in ("01", "02", "03", "04"):
        history = pd.read_csv(run_dir / "folds" / f"fold_{key}" / "history.csv")
        assert history["epoch"].tolist() == [1] and {"loss", "train_acc", "lr", "seconds"} <= set(history.columns)


def test_interrupted_then_resumed_run_equals_uninterrupted_run(reference_run, tiny_store, tmp_path):
    _, reference = reference_run
    run_dir = tmp_path / "resumed"
    # "killed" after two folds: only 01 and 02 complete, no run-level outputs yet
    partial = run_protocol(tiny_config(), tiny_store, run_dir, folds=["01", "02"], progress=False)
    assert sorted(partial["fold"].unique()) == ["01", "02"]
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "predictions.csv").exists()
    # ... and killed in the middle of fold 03: files written, done marker not
    (run_dir / "folds" / "fold_03").mkdir(parents=True)
    (run_dir / "folds" / "fold_03" / "predictions.csv").write_text("half a file")
    marker = run_dir / "folds" / "fold_01" / "done.json"
    marker_time = marker.stat().st_mtime_ns
    resumed = run_protocol(tiny_config(), tiny_store, run_dir, progress=False)
    assert marker.stat().st_mtime_ns == marker_time  # completed folds are not recomputed
    # exact equality with the reference, an independent run in another directory: this is also the
    # "two CPU runs with the same seed give identical predictions" check
    pd.testing.assert_frame_equal(resumed, reference)
    assert (run_dir / "metrics.json").exists()


def test_different_seed_gives_different_predictions(reference_run, tiny_store, tmp_path):
    _, reference = reference_run
    other = run_protocol(tiny_config(seed=12), tiny_store, tmp_path / "seed12", folds=["01"], progress=False)
    mine = reference[reference["fold"] == "01"].reset_index(drop=True)
    assert not np.allclose(other.filter(like="prob_").to_numpy(), mine.filter(like="prob_").to_numpy())


def test_run_directory_of_another_config_is_refused_with_the_difference(reference_run, tiny_store):
    run_dir, _ = reference_run
    with pytest.raises(RunConfigMismatch, match=r"train\.epochs: saved 1, now 2"):
        run_protocol(tiny_config(epochs=2), tiny_store, run_dir, progress=False)
    # scheduling knobs may change on resume: everything is done, so this returns the saved predictions
    again = run_protocol(tiny_config(), tiny_store, run_dir, executor="processes", workers=2, progress=False)
    assert len(again) == 12


def test_unknown_model_or_protocol_fails_before_any_work(tiny_store, tmp_path):
    bad_model = tiny_config().to_dict()
    bad_model["model"]["name"] = "meranet_tiny"
    with pytest.raises(ConfigError, match="unknown model 'meranet_tiny'"):
        run_protocol(bad_model, tiny_store, tmp_path / "a", progress=False)
    bad_protocol = tiny_config().to_dict()
    bad_protocol["protocol"]["name"] = "leave_one_out"
    with pytest.raises(ConfigError, match="leave_one_out"):
        run_protocol(bad_protocol, tiny_store, tmp_path / "b", progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_index_without_a_needed_column_is_named(tiny_store, tmp_path):
    broken = copy.copy(tiny_store)
    index = tiny_store.index.drop(columns="subject")
    index.attrs = dict(tiny_store.index.attrs)
    object.__setattr__(broken, "index", index)
    with pytest.raises(ProtocolError, match=r"needs column\(s\) \['subject'\]"):
        run_protocol(tiny_config(), broken, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_model_input_that_does_not_fit_the_store_fails_before_training(tiny_store, tmp_path):
    config = tiny_config().with_updates({"model.overrides.size": 32})
    with pytest.raises(ProtocolError, match=r"store gives \(1, 8, 16, 16\)"):
        run_protocol(config, tiny_store, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_checkpoint_reloads_to_the_same_predictions_and_a_corrupt_one_is_named(reference_run, tiny_store):
    from merkit.data.torch_dataset import ClipDataset
    from merkit.training.fold import predict

    run_dir, predictions = reference_run
    model = load_fold_model(run_dir, "02")
    test_positions = np.flatnonzero(tiny_store.index["subject"].astype(str).to_numpy() == "02")
    probs, _ = predict(model, ClipDataset(tiny_store, test_positions, augment=False, seed=0))
    saved = predictions[predictions["fold"] == "02"].filter(like="prob_").to_numpy()
    assert np.allclose(probs, saved, atol=1e-6)
    checkpoint = run_dir / "folds" / "fold_01" / "checkpoint.pt"
    good = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(good[: len(good) // 2])
        with pytest.raises(CheckpointError, match="fold_01/checkpoint.pt"):
            load_fold_model(run_dir, "01")
    finally:
        checkpoint.write_bytes(good)


def test_fold_result_model_is_the_trained_model_and_refuses_without_weights(reference_run, tiny_store):
    from merkit.data.torch_dataset import ClipDataset
    from merkit.evaluation.splits import make_splits
    from merkit.training.fold import predict
    from merkit.training.runner import run_fold

    _, predictions = reference_run
    classes = tiny_store.index.attrs["classes"]
    fold = [f for f in make_splits(tiny_store.index, "loso", classes=classes) if f.key == "03"][0]
    result = run_fold(tiny_config(), tiny_store, fold, classes)
    model = result.model()
    assert not model.training and type(model).__name__ == "MERANet"
    probs, _ = predict(model, ClipDataset(tiny_store, np.asarray(fold.test), augment=False, seed=0))
    assert np.allclose(probs, result.predictions.filter(like="prob_").to_numpy(), atol=1e-6)
    assert np.allclose(probs, predictions[predictions["fold"] == "03"].filter(like="prob_").to_numpy(), atol=1e-6)
    without = run_fold(tiny_config(), tiny_store, fold, classes, keep_weights=False)
    with pytest.raises(ValueError, match="kept no weights"):
        without.model()


def test_metrics_json_is_written_once_with_n_boot_intervals_and_the_model(tiny_store, tmp_path):
    run_protocol(tiny_config(), tiny_store, tmp_path / "run", folds=["01", "02"], progress=False, n_boot=50)
    assert not (tmp_path / "run" / "metrics.json").exists()  # a partial run writes no metrics
    run_protocol(tiny_config(), tiny_store, tmp_path / "run", progress=False, n_boot=50)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (
        metrics["ci"]["uf1"]["n_boot"] == 50 and metrics["model"] == "meranet_small" and metrics["protocol"] == "loso"
    )
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        run_protocol(tiny_config(), tiny_store, tmp_path / "other", progress=False, n_boot=0)
    assert not (tmp_path / "other").exists()


def test_inner_validation_uses_training_subjects_and_selects_an_epoch(tiny_store, tmp_path):
    config = tiny_config(epochs=2, val_fraction=0.34, select_best=True)
    run_protocol(config, tiny_store, tmp_path / "run", folds=["03"], progress=False)
    history = pd.read_csv(tmp_path / "run" / "folds" / "fold_03" / "history.csv")
    assert {"val_loss", "val_uf1", "val_uar", "selected"} <= set(history.columns)
    assert history["selected"].sum() == 1


def test_ray_local_executor_matches_sequential(reference_run, tiny_store, tmp_path):
    pytest.importorskip("ray")
    _, reference = reference_run
    predictions = run_protocol(tiny_config(), tiny_store, tmp_path / "ray", executor="ray", workers=2, progress=False)
    pd.testing.assert_frame_equal(predictions, reference, check_exact=False, atol=1e-6, rtol=0)


def test_process_executor_matches_sequential(reference_run, tiny_store, tmp_path):
    _, reference = reference_run
    predictions = run_protocol(
        tiny_config(),
        tiny_store,
        tmp_path / "proc",
        executor="processes",
        workers=2,
        folds=["01", "04"],
        progress=False,
    )
    expected = reference[reference["fold"].isin(["01", "04"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(predictions, expected, check_exact=False, atol=1e-6, rtol=0)


def test_config_preprocessing_that_differs_from_the_store_is_refused(tiny_store, tmp_path):
    config = tiny_config().with_updates({"preprocess.size": 32})
    with pytest.raises(ProtocolError, match="size: config 32, store 16"):
        run_protocol(config, tiny_store, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_augment_off_trains_on_the_plain_clips(reference_run, tiny_store, tmp_path):
    # train.augment is a real switch: without augmentation the same seed trains to other weights
    _, reference = reference_run
    plain = run_protocol(tiny_config(augment=False), tiny_store, tmp_path / "plain", folds=["01"], progress=False)
    mine = reference[reference["fold"] == "01"].reset_index(drop=True)
    assert not np.allclose(plain.filter(like="prob_").to_numpy(), mine.filter(like="prob_").to_numpy())


def test_run_fold_trains_with_the_configured_augmentation(tiny_store, tmp_path):
    # train.augmentation reaches the training clips: an augmentation that changes nothing trains exactly
    # like augment=False, while the reference run (default augmentation) does not (test above).
    identity = {"flip": 0.0, "crop_scale": [1.0, 1.0], "temporal_shift": 0, "brightness": 0.0, "contrast": 0.0}
    same = run_protocol(tiny_config(augmentation=identity), tiny_store, tmp_path / "same", folds=["01"], progress=False)
    plain = run_protocol(tiny_config(augment=False), tiny_store, tmp_path / "plain", folds=["01"], progress=False)
    np.testing.assert_array_equal(same.filter(like="prob_").to_numpy(), plain.filter(like="prob_").to_numpy())


# ------------------------------------------------------------------------------------ flow baselines


def flow_config(model: str) -> RunConfig:
    return tiny_config().with_updates({"model.name": model, "model.overrides": {}})


@pytest.mark.parametrize("model", ["ststnet", "offapexnet"])
def test_flow_baseline_runs_loso_with_a_prediction_for_every_clip(model, tiny_flow_store, tmp_path):
    predictions = run_protocol(flow_config(model), tiny_flow_store, tmp_path / model, progress=False)
    index = tiny_flow_store.index
    assert sorted(predictions["sample"]) == sorted(index["sample"].astype(str))
    assert sorted(predictions["fold"].unique()) == ["01", "02", "03", "04"]
    assert np.allclose(predictions.filter(like="prob_").sum(axis=1), 1.0, atol=1e-5)
    assert json.loads((tmp_path / model / "metrics.json").read_text())["n_folds"] == 4
    # the saved weights are the flow model's and reproduce the fold's predictions from the flow images
    from merkit.training.fold import predict
    from merkit.training.runner import model_dataset

    fold_model = load_fold_model(tmp_path / model, "02")
    held_out = np.flatnonzero(index["subject"].astype(str).to_numpy() == "02")
    held_out_ds = model_dataset(fold_model.input_spec, tiny_flow_store, held_out, augment=False, seed=0)
    probs, _ = predict(fold_model, held_out_ds)
    assert np.allclose(probs, predictions[predictions["fold"] == "02"].filter(like="prob_").to_numpy(), atol=1e-6)


def test_model_dataset_gives_each_flow_model_its_declared_channels(tiny_flow_store):
    from merkit.models import create_model
    from merkit.training.runner import model_dataset

    positions = np.arange(3)
    for name, channels in (
        ("ststnet", ("u", "v", "strain")),
        ("ststnet_kit", ("u", "v", "strain")),
        ("offapexnet", ("u", "v")),
    ):
        data = model_dataset(create_model(name).input_spec, tiny_flow_store, positions, augment=False, seed=0)
        assert data.channels == channels
        assert data[0][0].shape == (len(channels), 28, 28)
    full = model_dataset(create_model("ststnet_kit").input_spec, tiny_flow_store, positions, augment=False, seed=0)[1][
        0
    ]
    uv = model_dataset(create_model("offapexnet").input_spec, tiny_flow_store, positions, augment=False, seed=0)[1][0]
    assert torch.equal(uv, full[:2])  # the same u and v, strain dropped


def test_ststnet_is_fed_the_png_as_opencv_reads_it_bgr_0_to_255(tiny_flow_store, tmp_path):
    """The authors' input path: write the stored flow as the interchange PNG, cv2.imread it, feed it unscaled."""
    import cv2

    from merkit.data.flow import write_flow_png
    from merkit.models import create_model
    from merkit.training.runner import model_dataset

    data = model_dataset(create_model("ststnet").input_spec, tiny_flow_store, np.arange(2), augment=False, seed=0)
    for item in range(2):
        x = data[item][0].numpy()  # (3, 28, 28)
        path = write_flow_png(tmp_path / f"{item} .png", np.asarray(tiny_flow_store.flow[item], dtype=np.float32))
        opencv = cv2.imread(str(path)).astype(np.float32).transpose(2, 0, 1)  # (28, 28, B G R) -> (3, 28, 28)
        np.testing.assert_array_equal(x, opencv)
        assert x.max() == 255 and x.min() == 0


def test_flow_model_on_a_store_without_flow_says_how_to_build_one(tiny_store, tmp_path):
    with pytest.raises(
        ProtocolError,
        match=r"'offapexnet' reads onset→apex flow.*no flow \(no flow\.npy\).*"
        r"flow=FlowConfig\(\.\.\.\).*prepare_data\(\.\.\., flow='tvl1'\)",
    ):
        run_protocol(flow_config("offapexnet"), tiny_store, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_flow_model_of_another_size_than_the_stored_flow_is_refused(tiny_flow_store, tmp_path):
    config = flow_config("ststnet").with_updates({"model.overrides": {"size": 32}})
    with pytest.raises(ProtocolError, match=r"store gives \(3, 28, 28\).*FlowConfig\(size=32\)"):
        run_protocol(config, tiny_flow_store, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_variant_config_carries_input_sizes_only_to_models_that_take_them():
    from merkit.config import variant_config

    base = tiny_config()
    ablation = variant_config(base, "meranet_small:none")
    assert ablation.model.name == "meranet_small"
    assert ablation.model.overrides == {"frames": 8, "size": 16, "attention": "none"}
    assert ablation.train == base.train and ablation.protocol == base.protocol
    flow = variant_config(base, "ststnet")  # ststnet takes a size too, but of a flow image: the clip's is not carried
    assert flow.model.name == "ststnet" and flow.model.overrides == {}
    with pytest.raises(ConfigError, match="no attention parameter"):
        variant_config(base, "stcnn:channel")
