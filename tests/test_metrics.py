"""Metrics against hand-computed examples (MEGC2019 pooled scoring) and the MEGC log format."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, recall_score

from merkit.evaluation.metrics import (
    AbsentClassWarning,
    MegcLogError,
    PredictionsError,
    bootstrap_ci,
    classes_from_predictions,
    confusion_matrix,
    fold_mean_scores,
    per_subject_table,
    pooled_scores,
    read_megc_log,
    scores_by,
    summarise,
    validate_predictions,
    write_megc_log,
)

CLASSES = ["negative", "positive", "surprise"]


def make_predictions(rows):
    """rows: (dataset, subject, sample, fold, gt, pred); probabilities put 0.8 on the predicted class."""
    df = pd.DataFrame(rows, columns=["dataset", "subject", "sample", "fold", "gt", "pred"])
    for i, name in enumerate(CLASSES):
        df[f"prob_{name}"] = np.where(df["pred"] == i, 0.8, 0.1)
    return df


@pytest.fixture
def three_folds():
    # Fold s1 lacks class 2, fold s2 is one sample, fold s3 is all correct (hand computation in the tests).
    return make_predictions(
        [
            ("casme2", "s1", "a", "s1", 0, 0),
            ("casme2", "s1", "b", "s1", 0, 1),
            ("casme2", "s1", "c", "s1", 1, 1),
            ("samm", "s2", "d", "s2", 2, 0),
            ("samm", "s3", "e", "s3", 0, 0),
            ("samm", "s3", "f", "s3", 2, 2),
        ]
    )


def test_pooled_scores_match_hand_computation(three_folds):
    s = pooled_scores(three_folds["gt"], three_folds["pred"], 3)
    # class 0: TP 2 FP 1 FN 1 -> F1 4/6, recall 2/3; class 1: TP 1 FP 1 FN 0 -> F1 2/3, recall 1;
    # class 2: TP 1 FP 0 FN 1 -> F1 2/3, recall 1/2.
    assert s["uf1"] == pytest.approx(2 / 3)
    assert s["uar"] == pytest.approx(13 / 18)
    assert s["accuracy"] == pytest.approx(4 / 6)
    table = s["per_class"]
    assert table["tp"].tolist() == [2, 1, 1]
    assert table["fp"].tolist() == [1, 1, 0]
    assert table["fn"].tolist() == [1, 0, 1]
    assert table["support"].tolist() == [3, 1, 2]
    assert table["recall"].tolist() == pytest.approx([2 / 3, 1.0, 0.5])


def test_fold_mean_differs_from_pooled_as_computed_by_hand(three_folds):
    fm = fold_mean_scores(three_folds)
    # s1: UF1 2/3 (class 2 absent), UAR 3/4, acc 2/3; s2 (one sample, wrong): 0, 0, 0; s3: 1, 1, 1.
    assert fm["per_fold"].loc["s1", "uf1"] == pytest.approx(2 / 3)
    assert fm["per_fold"].loc["s1", "uar"] == pytest.approx(3 / 4)
    assert fm["per_fold"].loc["s2", "n"] == 1
    assert fm["per_fold"].loc["s2", "uf1"] == 0.0
    assert fm["uf1_fold_mean"] == pytest.approx(5 / 9)
    assert fm["uar_fold_mean"] == pytest.approx(7 / 12)
    assert fm["accuracy_fold_mean"] == pytest.approx(5 / 9)
    assert fm["n_folds"] == 3
    pooled = pooled_scores(three_folds["gt"], three_folds["pred"], 3)
    assert fm["uf1_fold_mean"] != pytest.approx(pooled["uf1"])
    assert fm["uar_fold_mean"] != pytest.approx(pooled["uar"])
    assert "uf1" not in fm and "NOT" in fm["note"]  # labelled: cannot be mistaken for pooled scores


def test_class_absent_from_whole_set_is_excluded_with_warning():
    with pytest.warns(AbsentClassWarning, match="surprise"):
        s = pooled_scores([0, 0, 1], [0, 2, 1], 3, class_names=CLASSES)
    # class 0: TP1 FN1 -> F1 2/3, recall 1/2; class 1: F1 1, recall 1; class 2 has no true sample.
    assert s["uf1"] == pytest.approx(5 / 6)
    assert s["uar"] == pytest.approx(3 / 4)
    assert s["n_scored_classes"] == 2
    row = s["per_class"].loc["surprise"]
    assert not row["scored"] and row["fp"] == 1 and np.isnan(row["f1"])


def test_pooled_scores_agree_with_sklearn_macro_over_present_classes():
    rng = np.random.default_rng(3)
    for _ in range(5):
        gt = rng.integers(0, 4, size=40)
        pred = rng.integers(0, 4, size=40)
        s = pooled_scores(gt, pred, 4, warn_absent=False)
        present = sorted(set(gt.tolist()))
        assert s["uf1"] == pytest.approx(f1_score(gt, pred, labels=present, average="macro"))
        assert s["uar"] == pytest.approx(recall_score(gt, pred, labels=present, average="macro"))


def test_pooled_scores_rejects_bad_input():
    with pytest.raises(PredictionsError, match="outside"):
        pooled_scores([0, 3], [0, 1], 3)
    with pytest.raises(PredictionsError, match="2 samples"):
        pooled_scores([0, 1], [0], 3)
    with pytest.raises(PredictionsError, match="no samples"):
        pooled_scores([], [], 3)
    with pytest.raises(PredictionsError, match="missing values"):
        pooled_scores(pd.Series([0, None], dtype="Int64"), [0, 1], 3)
    with pytest.raises(PredictionsError, match="integer"):
        pooled_scores([0.5, 1.0], [0, 1], 3)


def test_validate_predictions_names_missing_columns_and_bad_samples(three_folds):
    with pytest.raises(PredictionsError, match="fold"):
        validate_predictions(three_folds.drop(columns="fold"))
    bad = three_folds.copy()
    bad.loc[3, "pred"] = 7
    with pytest.raises(PredictionsError, match="'d'"):
        validate_predictions(bad)
    floats = three_folds.astype({"gt": float})
    floats.loc[0, "gt"] = 0.5
    with pytest.raises(PredictionsError, match="integer"):
        validate_predictions(floats)
    assert validate_predictions(three_folds) == 3
    assert classes_from_predictions(three_folds) == CLASSES


def test_scores_by_dataset_by_hand(three_folds):
    with pytest.warns(AbsentClassWarning) as caught:
        table = scores_by(three_folds, "dataset")
    # casme2 has no surprise (2), samm no positive (1): each group's warning names it.
    messages = sorted(str(w.message) for w in caught)
    assert messages[0].startswith("dataset=casme2: class(es) [2]")
    assert messages[1].startswith("dataset=samm: class(es) [1]")
    # casme2: gt [0,0,1] pred [0,1,1] -> UF1 2/3, UAR 3/4; samm: gt [2,0,2] pred [0,0,2]
    # class 0: TP1 FP1 -> F1 2/3, recall 1; class 2: TP1 FN1 -> F1 2/3, recall 1/2.
    assert table.loc["casme2", "uf1"] == pytest.approx(2 / 3)
    assert table.loc["casme2", "uar"] == pytest.approx(3 / 4)
    assert table.loc["samm", "uf1"] == pytest.approx(2 / 3)
    assert table.loc["samm", "uar"] == pytest.approx(3 / 4)
    assert table["n"].tolist() == [3, 3]


def test_per_subject_table(three_folds):
    table = per_subject_table(three_folds).set_index("subject")
    assert table.loc["s1", "n"] == 3 and table.loc["s1", "n_correct"] == 2
    assert table.loc["s2", "accuracy"] == 0.0
    assert table.loc["s3", "n_surprise"] == 1 and table.loc["s1", "n_negative"] == 2


def test_confusion_matrix_rows_are_true_class(three_folds):
    cm = confusion_matrix(three_folds, CLASSES)
    assert cm.index.name == "true" and cm.columns.name == "pred"
    expected = [[2, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert cm.to_numpy().tolist() == expected
    assert cm.loc["surprise", "negative"] == 1


def test_bootstrap_ci_matches_naive_resampling(three_folds):
    preds = pd.concat([three_folds] * 4, ignore_index=True)
    for metric in ("uf1", "uar", "accuracy"):
        ci = bootstrap_ci(preds, metric, n_boot=50, seed=7)
        # The same replicates computed one by one from the multinomial counts.
        rng = np.random.default_rng(7)
        n = len(preds)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=50)
        values = []
        for row in counts:
            idx = np.repeat(np.arange(n), row)
            values.append(
                pooled_scores(preds["gt"].to_numpy()[idx], preds["pred"].to_numpy()[idx], 3, warn_absent=False)[metric]
            )
        low, high = np.quantile(values, [0.025, 0.975])
        assert ci["low"] == pytest.approx(low) and ci["high"] == pytest.approx(high)
        assert ci["low"] <= ci["estimate"] <= ci["high"]
        assert ci["estimate"] == pytest.approx(pooled_scores(preds["gt"], preds["pred"], 3)[metric])


def test_bootstrap_ci_is_seeded_and_degenerate_when_perfect(three_folds):
    a = bootstrap_ci(three_folds, "uf1", n_boot=200, seed=1)
    b = bootstrap_ci(three_folds, "uf1", n_boot=200, seed=1)
    c = bootstrap_ci(three_folds, "uf1", n_boot=200, seed=2)
    assert a == b and a != c
    perfect = three_folds.assign(pred=three_folds["gt"])
    ci = bootstrap_ci(perfect, "uar", n_boot=100)
    assert ci["low"] == ci["high"] == 1.0
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci(three_folds, "auc")


def test_summarise_is_json_ready(three_folds):
    summary = summarise(three_folds, CLASSES, n_boot=100)
    text = json.dumps(summary, allow_nan=False)  # strict JSON: no NaN, no numpy types
    back = json.loads(text)
    assert back["pooled"]["uf1"] == pytest.approx(2 / 3)
    assert back["pooled"]["uar"] == pytest.approx(13 / 18)
    assert back["n_samples"] == 6 and back["n_folds"] == 3 and back["n_subjects"] == 3
    assert set(back["per_dataset"]) == {"casme2", "samm"}
    assert back["confusion"][2] == [1, 0, 1]
    assert back["ci"]["accuracy"]["low"] <= back["pooled"]["accuracy"] <= back["ci"]["accuracy"]["high"]
    assert [r["class"] for r in back["per_class"]] == CLASSES


def test_summarise_reports_absent_class_as_null():
    preds = make_predictions([("d", "x", "a", 0, 0, 0), ("d", "x", "b", 0, 1, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AbsentClassWarning)
        summary = summarise(preds, CLASSES, n_boot=20)
    surprise = summary["per_class"][2]
    assert surprise["scored"] is False and surprise["f1"] is None and surprise["fp"] == 1
    json.dumps(summary, allow_nan=False)


def test_megc_log_round_trip(tmp_path, three_folds):
    preds = three_folds.assign(subject=["01", "01", "01", "006", "007", "007"])
    path = write_megc_log(preds, tmp_path / "log.txt")
    text = path.read_text()
    assert text.splitlines()[:2] == ["casme2 01", "a 0 0"]
    back = read_megc_log(path)
    cols = ["dataset", "subject", "sample", "gt", "pred"]
    assert back[cols].to_dict("records") == preds[cols].to_dict("records")
    assert back["subject"].tolist()[3] == "006"  # zero padding survives
    assert back["fold"].tolist()[3] == "samm/006"
    # scores from the log equal scores from the original predictions
    assert pooled_scores(back["gt"], back["pred"], 3)["uf1"] == pytest.approx(2 / 3)


def test_megc_log_reads_class_names_comments_and_reports_bad_lines(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("# published log\n\ncasme2 01\nEP02_01f negative Surprise\nEP03 1 1\n")
    back = read_megc_log(path, classes=CLASSES)
    assert back["gt"].tolist() == [0, 1] and back["pred"].tolist() == [2, 1]
    path.write_text("EP02_01f 0 1\n")
    with pytest.raises(MegcLogError, match=r"log.txt:1: .*before any"):
        read_megc_log(path)
    path.write_text("casme2 01\nEP02_01f 0 1 9\n")
    with pytest.raises(MegcLogError, match=r"log.txt:2: .*4 fields"):
        read_megc_log(path)
    path.write_text("casme2 01\nEP02_01f happy 1\n")
    with pytest.raises(MegcLogError, match=r"log.txt:2: label 'happy'"):
        read_megc_log(path)


def test_megc_log_refuses_ids_with_whitespace(tmp_path, three_folds):
    bad = three_folds.assign(sample=["a b", "c", "d", "e", "f", "g"])
    with pytest.raises(MegcLogError, match="'a b'"):
        write_megc_log(bad, tmp_path / "log.txt")
    assert not (tmp_path / "log.txt").exists()
