"""protocols.py: split generators (pure pandas, fast) and the fold runner on a tiny SynthME."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from merkit.protocols import (
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
