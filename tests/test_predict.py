"""merkit.predict: model bundles round-trip, a prediction equals the model on the same clip from the store,
the overlay and JSON are written, and bad inputs give one clear error (also through `merkit predict`)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from merkit.config import DataConfig
from merkit.data.inputs import model_dataset
from merkit.data.preprocess import PreprocessConfig
from merkit.data.torch_dataset import ClipDataset
from merkit.models import create_model
from merkit.predict import PredictError, load_model, predict_clip, save_model
from merkit.prepare import prepare_data

PRE = PreprocessConfig(frames=8, size=32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("predict_cache")
    data = DataConfig(synthme_n_subjects=2, synthme_clips_per_subject=3, synthme_n_frames=12, synthme_size=48)
    prepared = prepare_data(data, PRE, cache_dir=cache, progress=False)
    torch.manual_seed(0)
    model = create_model("meranet_small", num_classes=3, frames=8)
    run = tmp_path_factory.mktemp("run")
    save_model(run / "model.pt", model, classes=prepared.classes, preprocess=PRE)
    return prepared, model, run


def test_bundle_round_trip_gives_the_same_logits(tiny):
    prepared, model, run = tiny
    bundle = load_model(run / "model.pt")
    x = ClipDataset(prepared.store)[0][0][None]  # (c, t, s, s) -> (1, c, t, s, s)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(bundle.model(x), model(x), atol=1e-6)
    assert bundle.classes == prepared.classes and bundle.preprocess == PRE.to_dict()


def test_prediction_matches_the_store_clip_and_writes_overlay(tiny, tmp_path):
    prepared, model, run = tiny
    row = prepared.store.index.iloc[1]
    folder = prepared.data_root / row["path"]
    prediction = predict_clip(
        folder, run_dir=run, onset=int(row["onset"]), offset=int(row["offset"]), crop="dataset", out_dir=tmp_path
    )
    x = ClipDataset(prepared.store)[1][0][None]
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x), dim=1)[0].numpy()
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-5)
    assert prediction.overlay.is_file() and prediction.overlay.stat().st_size > 1000
    saved = json.loads(prediction.json_path.read_text())
    assert saved["predicted"] == prediction.predicted
    assert pytest.approx(sum(saved["probabilities"].values()), abs=1e-5) == 1.0
    assert saved["frames_read"] == int(row["offset"]) - int(row["onset"]) + 1


def test_whole_clip_and_auto_crop_say_which_crop(tiny, tmp_path):
    prepared, _, run = tiny
    folder = prepared.data_root / prepared.store.index.iloc[0]["path"]
    prediction = predict_clip(folder, run_dir=run, out_dir=tmp_path, overlay=False)
    assert prediction.frames_read == 12
    assert prediction.crop.startswith(("haar", "center"))
    assert prediction.overlay is None


def test_bad_inputs_name_the_file(tiny, tmp_path):
    prepared, _, run = tiny
    folder = prepared.data_root / prepared.store.index.iloc[0]["path"]
    with pytest.raises(PredictError, match="no model.pt"):
        predict_clip(folder, run_dir=tmp_path)
    with pytest.raises(PredictError, match="does not exist"):
        predict_clip(tmp_path / "nope.mp4", run_dir=run)
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(PredictError, match="bogus.pt"):
        predict_clip(folder, checkpoint=bogus)


@pytest.mark.slow
def test_cli_predict_prints_probabilities_and_fails_cleanly(tiny, tmp_path):
    prepared, _, run = tiny
    folder = prepared.data_root / prepared.store.index.iloc[0]["path"]
    ok = subprocess.run(
        [sys.executable, "-m", "merkit.cli", "predict", str(folder), "--run", str(run), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert "predicted:" in ok.stdout and str(tmp_path / "attention.png") in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "merkit.cli", "predict", str(folder), "--run", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("merkit: error:") and "does not exist" in bad.stderr


# ---------------------------------------------------------------- a flow model (ststnet) bundle


@pytest.fixture(scope="module")
def tiny_flow(tmp_path_factory):
    cache = tmp_path_factory.mktemp("predict_flow_cache")
    data = DataConfig(synthme_n_subjects=2, synthme_clips_per_subject=2, synthme_n_frames=12, synthme_size=48)
    prepared = prepare_data(data, PRE, cache_dir=cache, flow="farneback", progress=False)
    torch.manual_seed(0)
    model = create_model("ststnet", num_classes=3)
    run = tmp_path_factory.mktemp("flow_run")
    save_model(run / "model.pt", model, classes=prepared.classes, preprocess=PRE, flow=prepared.store.flow_config)
    return prepared, model, run


def test_flow_bundle_records_the_store_flow_config(tiny_flow):
    prepared, model, run = tiny_flow
    bundle = load_model(run / "model.pt")
    assert bundle.flow == prepared.store.flow_config.to_dict() and bundle.flow["method"] == "farneback"
    with pytest.raises(PredictError, match="flow model.*flow_config"):
        save_model(run / "other.pt", model, classes=prepared.classes, preprocess=PRE)


def test_flow_prediction_matches_the_store_flow_image_and_writes_ig_overlay(tiny_flow, tmp_path):
    prepared, model, run = tiny_flow
    position = 2
    row = prepared.store.index.iloc[position]
    prediction = predict_clip(
        prepared.data_root / row["path"],
        run_dir=run,
        onset=int(row["onset"]),
        apex=int(row["apex_used"]),
        offset=int(row["offset"]),
        crop="dataset",
        out_dir=tmp_path,
    )
    x = model_dataset(model.input_spec, prepared.store, np.array([position]), augment=False, seed=0)[0][0][
        None
    ]  # (3, 28, 28) -> (1, 3, 28, 28)
    assert x.max() == 255  # ststnet is fed the 8-bit PNG values, as its authors feed it
    with torch.no_grad():
        expected = torch.softmax(model.eval()(x), dim=1)[0].numpy()
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-5)
    assert prediction.overlay == tmp_path / "attribution.png" and prediction.overlay.stat().st_size > 1000
    assert "ig overlay:" in prediction.describe()
    saved = json.loads(prediction.json_path.read_text())
    assert saved["overlay_method"] == "ig" and saved["flow"]["method"] == "farneback"
    assert saved["apex"] == int(row["apex_used"])


def test_flow_prediction_depends_on_the_apex(tiny_flow, tmp_path):
    prepared, _, run = tiny_flow
    row = prepared.store.index.iloc[0]
    folder = prepared.data_root / row["path"]
    onset = int(row["onset"])
    at_onset = predict_clip(
        folder, run_dir=run, onset=onset, apex=onset + 1, crop="dataset", out_dir=tmp_path, overlay=False
    )
    at_apex = predict_clip(
        folder, run_dir=run, onset=onset, apex=int(row["apex_used"]), crop="dataset", out_dir=tmp_path, overlay=False
    )
    # compared as log-probabilities: an untrained ststnet on 0..255 input is very confident
    log_onset, log_apex = (np.log(np.clip(p.probabilities, 1e-37, None)) for p in (at_onset, at_apex))
    assert not np.allclose(log_onset, log_apex, atol=1e-3)


def test_apex_position_maps_the_apex_frame_number_into_the_normalised_clip():
    from merkit.predict import apex_position

    numbers = np.arange(100, 121)  # frames 100..120
    # onset_offset samples 5 frames at numbers 100, 105, 110, 115, 120: the apex 115 is position 3
    assert apex_position(numbers, 100, 115, 120, PreprocessConfig(frames=5, size=32)) == 3
    assert apex_position(numbers, 100, 101, 120, PreprocessConfig(frames=5, size=32)) == 0


def test_overlay_is_drawn_at_the_apex_not_at_the_onset(tiny, tmp_path):
    prepared, _, run = tiny
    row = prepared.store.index.iloc[1]
    onset, offset = int(row["onset"]), int(row["offset"])
    apex = onset + (offset - onset) * 3 // 4
    prediction = predict_clip(
        prepared.data_root / row["path"],
        run_dir=run,
        onset=onset,
        offset=offset,
        apex=apex,
        crop="dataset",
        out_dir=tmp_path,
    )
    saved = json.loads(prediction.json_path.read_text())
    expected = round((apex - onset) / (offset - onset) * (PRE.frames - 1))
    assert saved["apex"] == apex and saved["overlay_position"] == expected and expected > 0


# ---------------------------------------------------------------- bad input through `merkit predict`


def _predict_cli(capsys, *args: str) -> tuple[int, str]:
    """`merkit predict …` in this process (what the ``merkit`` command runs): exit code and stderr."""
    from merkit.cli import main

    code = main(["predict", *args])
    return code, capsys.readouterr().err


def _one_error_line(code: int, err: str) -> str:
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("merkit: error: "), err
    return lines[0]


def _grey_frames(folder, count: int, first: int = 0):
    """``count`` flat grey 48x48 frames img<first>.png …: nothing a face detector can find."""
    from PIL import Image

    folder.mkdir(parents=True)
    for number in range(first, first + count):
        Image.fromarray(np.full((48, 48, 3), 128, dtype=np.uint8)).save(folder / f"img{number}.png")
    return folder


def test_cli_refuses_one_image_as_a_clip(tiny, tmp_path, capsys):
    _, _, run = tiny
    image = _grey_frames(tmp_path / "frames", 1) / "img0.png"
    line = _one_error_line(*_predict_cli(capsys, str(image), "--run", str(run), "--out", str(tmp_path / "out")))
    assert str(image) in line and "one image, not a clip" in line and "folder" in line and "video" in line
    assert not (tmp_path / "out").exists()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a clip")
    line = _one_error_line(*_predict_cli(capsys, str(notes), "--run", str(run)))
    assert str(notes) in line and "neither a folder of frames nor a video file" in line


def test_cli_names_an_onset_outside_the_clip_and_its_frame_range(tiny, tmp_path, capsys):
    _, _, run = tiny
    folder = _grey_frames(tmp_path / "ten", 10)
    line = _one_error_line(*_predict_cli(capsys, str(folder), "--run", str(run), "--onset", "50"))
    assert "onset 50" in line and str(folder) in line and "0..9" in line and "10 frame files" in line
    line = _one_error_line(*_predict_cli(capsys, str(folder), "--run", str(run), "--onset", "6", "--offset", "3"))
    assert "onset 6 is after offset 3" in line
    line = _one_error_line(*_predict_cli(capsys, str(folder), "--run", str(run), "--onset", "5", "--apex", "2"))
    assert "apex 2" in line and "5..9" in line
    assert not (run / "predictions").exists()


def test_cli_crop_haar_refuses_a_clip_without_a_face_and_auto_falls_back_to_the_centre(tiny, tmp_path, capsys):
    from merkit.data.preprocess import PreprocessError, find_haar_cascade

    try:
        find_haar_cascade("")
    except PreprocessError:
        pytest.skip("no Haar cascade file installed (apt-get install opencv-data): crop haar cannot run")
    _, _, run = tiny
    folder = _grey_frames(tmp_path / "noface", 10)
    out = tmp_path / "out"
    line = _one_error_line(*_predict_cli(capsys, str(folder), "--run", str(run), "--crop", "haar", "--out", str(out)))
    assert str(folder) in line and "no face" in line and "crop haar" in line and "crop auto" in line
    assert not out.exists()
    prediction = predict_clip(folder, run_dir=run, crop="auto", out_dir=out, overlay=False)
    assert prediction.crop.startswith("center")
