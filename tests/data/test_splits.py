import numpy as np
import pandas as pd
import pytest

from leukonet.data.manifest import Manifest
from leukonet.errors import LeukonetError


def _synthetic(n_groups=60, per_group=4, classes=("A", "B", "C"), seed=0, split=None):
    """A manifest frame without images: families of ``per_group`` rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = classes[g % len(classes)]
        size = int(rng.integers(1, per_group * 2))
        for k in range(size):
            rows.append(dict(path=f"{label}/{g}_{k}.png", label=label, sha1=f"{g:04d}{k:04d}",
                             width=8, height=8, group=g, split=split(g) if split else None))
    frame = pd.DataFrame(rows)
    if split is None:
        frame = frame.drop(columns="split")
    return Manifest(frame)


def _groups(m):
    return set(m.frame["group"])


def test_split_keeps_families_whole_and_stratifies():
    m = _synthetic(n_groups=120)
    parts = m.split(val=0.2, seed=0)
    assert set(parts) == {"train", "val"}
    assert not _groups(parts["train"]) & _groups(parts["val"])
    assert len(parts["train"]) + len(parts["val"]) == len(m)
    share = len(parts["val"]) / len(m)
    assert 0.12 < share < 0.28
    for label in m.classes:  # every class present in validation, about its share
        n = (parts["val"].frame["label"] == label).sum()
        assert 0.1 < n / (m.frame["label"] == label).sum() < 0.32
    assert (parts["val"].frame["split"] == "val").all()


def test_split_is_deterministic_for_a_seed():
    m = _synthetic(n_groups=90)
    a = m.split(val=0.2, seed=3)["val"].frame["path"].tolist()
    b = m.split(val=0.2, seed=3)["val"].frame["path"].tolist()
    c = m.split(val=0.2, seed=4)["val"].frame["path"].tolist()
    assert a == b and a != c


def test_split_with_test_fraction():
    m = _synthetic(n_groups=150)
    parts = m.split(val=0.2, test=0.1, seed=0)
    assert set(parts) == {"train", "val", "test"}
    gs = [_groups(p) for p in parts.values()]
    assert not (gs[0] & gs[1]) and not (gs[0] & gs[2]) and not (gs[1] & gs[2])
    assert 0.05 < len(parts["test"]) / len(m) < 0.16
    assert 0.13 < len(parts["val"]) / len(m) < 0.28


def test_test_folder_is_kept_as_the_test_set():
    m = _synthetic(n_groups=100, split=lambda g: "TEST" if g >= 80 else "TRAIN")
    parts = m.split(val=0.2, seed=0)
    assert set(parts["test"].frame["path"]) == set(m.frame[m.frame["split"] == "TEST"]["path"])
    assert not _groups(parts["train"]) & _groups(parts["val"])
    assert any("the TEST folder" in n for n in parts["train"].notes)


def test_copies_of_test_folder_cells_are_left_out_of_train_and_val():
    # Family 85 has rows in TEST and in TRAIN (a leak in the published folder split):
    # the test folder stays whole and the TRAIN copies go nowhere.
    m = _synthetic(n_groups=100, split=lambda g: "TEST" if g >= 80 else "TRAIN")
    frame = m.frame.copy()
    frame.loc[frame["group"] == 5, "group"] = 85
    frame.loc[frame["group"] == 85, "label"] = frame.loc[frame["group"] == 85, "label"].iloc[-1]
    m = Manifest(frame)
    parts = m.split(val=0.2, seed=0)
    leaked = m.frame[(m.frame["group"] == 85) & (m.frame["split"] == "TRAIN")]
    assert len(leaked) > 0
    assert set(parts["test"].frame["path"]) == set(m.frame[m.frame["split"] == "TEST"]["path"])
    kept = set(parts["train"].frame["path"]) | set(parts["val"].frame["path"])
    assert not kept & set(leaked["path"])
    assert len(kept) + len(parts["test"]) + len(leaked) == len(m)
    assert any(f"their {len(leaked)} images outside the test folder are left out" in n
               for n in parts["train"].notes)


def test_split_needs_groups_and_enough_families():
    frame = pd.DataFrame(dict(path=["a", "b"], label=["A", "B"], sha1=["1", "2"]))
    with pytest.raises(LeukonetError, match="no family column"):
        Manifest(frame).split()
    with pytest.raises(LeukonetError, match="only 3 families"):
        _synthetic(n_groups=3).split(val=0.2)
    with pytest.raises(LeukonetError, match="expected a fraction"):
        _synthetic().split(val=0.9)


def test_subsample_is_nested_stratified_and_whole_families():
    m = _synthetic(n_groups=300, classes=("A", "B", "C", "D"))
    subsets = {f: m.subsample(f, seed=0) for f in (0.5, 0.1, 0.01)}
    p50, p10, p1 = (set(subsets[f].frame["path"]) for f in (0.5, 0.1, 0.01))
    assert p1 <= p10 <= p50
    for f, sub in subsets.items():
        counts = sub.frame["label"].value_counts()
        assert set(counts.index) == set(m.classes)  # at least one image per class
        for g in _groups(sub):  # whole families
            assert (sub.frame["group"] == g).sum() == (m.frame["group"] == g).sum()
    share = len(subsets[0.1]) / len(m)
    assert 0.08 < share < 0.16
    assert m.subsample(0.1, seed=1).frame["path"].tolist() != subsets[0.1].frame["path"].tolist()
    assert len(m.subsample(1.0)) == len(m)


def test_group_folds_put_every_family_in_one_fold_and_stratify():
    from leukonet.data.splits import group_folds

    frame = _synthetic(n_groups=90).frame
    fold = group_folds(frame["label"].to_numpy(), frame["group"].to_numpy(), 3, seed=0)
    assert set(fold) == {0, 1, 2}
    assert frame.assign(fold=fold).groupby("group")["fold"].nunique().eq(1).all()
    for k in range(3):  # each fold holds about a third of each class
        held = frame[fold == k]
        for label in ("A", "B", "C"):
            share = (held["label"] == label).sum() / (frame["label"] == label).sum()
            assert 0.2 < share < 0.47
    again = group_folds(frame["label"].to_numpy(), frame["group"].to_numpy(), 3, seed=0)
    other = group_folds(frame["label"].to_numpy(), frame["group"].to_numpy(), 3, seed=1)
    assert (again == fold).all() and (other != fold).any()


def test_group_folds_refuse_too_few_families_or_folds():
    from leukonet.data.splits import group_folds

    frame = _synthetic(n_groups=4).frame
    with pytest.raises(LeukonetError, match="only 4 families"):
        group_folds(frame["label"].to_numpy(), frame["group"].to_numpy(), 5, seed=0)
    with pytest.raises(LeukonetError, match="at least 2 folds"):
        group_folds(frame["label"].to_numpy(), frame["group"].to_numpy(), 1, seed=0)


def test_split_reports_shares_per_class_and_warns_when_one_misses_by_over_2_points():
    from leukonet.data.splits import split_shares

    m = _synthetic(n_groups=120)
    frame = m.frame.copy()
    # one A family holds most of class A: whichever side it lands on, A misses its share
    a_groups = frame.loc[frame["label"] == "A", "group"].unique()
    frame.loc[frame["label"] == "A", "group"] = np.where(
        frame.loc[frame["label"] == "A", "group"].isin(a_groups[:30]), a_groups[0],
        frame.loc[frame["label"] == "A", "group"])
    parts = Manifest(frame).split(val=0.2, seed=0)
    shares = split_shares(parts)
    assert list(shares.columns) == ["train", "val"] and list(shares.index) == ["A", "B", "C"]
    assert np.allclose(shares.sum(axis=1), 1)
    warning = [n for n in parts["train"].notes if "misses its 20%" in n]
    assert len(warning) == 1 and "A " in warning[0] and "try another --seed" in warning[0]
    assert abs(shares.at["A", "val"] - 0.2) > 0.02
    # a split that keeps every class within 2 points says nothing
    even = _synthetic(n_groups=600, per_group=1)
    assert not [n for n in even.split(val=0.2, seed=0)["val"].notes if "misses" in n]


def test_a_class_with_one_family_is_warned_about():
    m = _synthetic(n_groups=90)
    frame = m.frame.copy()
    frame.loc[frame.index[0], ["label", "group"]] = ["D", 999]  # one basophil among many
    parts = Manifest(frame).split(val=0.2, seed=0)
    assert any("class D has 1 family (1 images): it cannot be in all 2 splits" in n
               for n in parts["train"].notes)


def test_cli_split_prints_the_share_of_each_class(tmp_path, capsys):
    from leukonet.cli import main

    m = _synthetic(n_groups=120)
    m.to_csv(tmp_path / "m.csv")
    assert main(["manifest", "split", str(tmp_path / "m.csv"), "--val", "0.2", "--test", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "share of each class per split:" in out
    table = out.split("share of each class per split:")[1]
    assert "train" in table and "val" in table and "test" in table and "%" in table


def test_cli_split_refuses_an_output_that_looks_like_a_file(tmp_path, capsys):
    from leukonet.cli import main

    _synthetic(n_groups=60).to_csv(tmp_path / "m.csv")
    assert main(["manifest", "split", str(tmp_path / "m.csv"), "-o", str(tmp_path / "split.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-o is a folder" in err and "split.csv" in err
    assert not (tmp_path / "split.csv").exists()  # no folder named split.csv
    assert main(["manifest", "split", str(tmp_path / "m.csv"), "-o", str(tmp_path / "split")]) == 0
    assert (tmp_path / "split" / "train.csv").is_file()
