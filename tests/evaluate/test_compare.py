"""leukonet compare: paired accuracy differences with an interval over families."""
import json

import numpy as np
import pandas as pd
import pytest

from leukonet.cli import main
from leukonet.errors import LeukonetError
from leukonet.evaluate.compare import compare


def _predictions(folder, wrong_families, families=10, copies=20, groups=True):
    """predictions.csv of an evaluation over FAMILIES cells of COPIES images each, where
    every copy of the families in WRONG_FAMILIES is predicted wrong."""
    rows = []
    for f in range(families):
        label = "A" if f % 2 else "B"
        for c in range(copies):
            predicted = ("B" if label == "A" else "A") if f in wrong_families else label
            rows.append(dict(path=f"{label}/f{f}_c{c}.png", label=label, group=str(f),
                             predicted=predicted, confidence=0.9, error=""))
    frame = pd.DataFrame(rows)
    if not groups:
        frame = frame.drop(columns="group")
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "predictions.csv", index=False)
    return folder


def test_one_cell_wrong_is_noise_by_family_but_not_by_image(tmp_path):
    # B gets one whole cell (20 copies of 200 images) wrong: 10 points. Copies of a cell
    # are one observation, so by family the interval reaches 0; counting the images as
    # independent, it would wrongly look certain.
    a, b = _predictions(tmp_path / "a", set()), _predictions(tmp_path / "b", {3})
    by_family = compare(a, b)
    assert by_family["difference"] == pytest.approx(0.1)
    assert by_family["families"] == 10
    assert by_family["difference_ci95"][0] == pytest.approx(0.0)
    assert by_family["difference_ci95"][1] > 0.1
    assert (by_family["wrong_in_both"], by_family["wrong_only_a"], by_family["wrong_only_b"]) == (0, 0, 20)
    assert by_family["families_mostly_right_only_a"] == 1

    a2, b2 = (_predictions(tmp_path / "a2", set(), groups=False),
              _predictions(tmp_path / "b2", {3}, groups=False))
    by_image = compare(a2, b2)
    assert by_image["families"] == 200 and "every image counted as its own" in by_image["family_source"]
    assert by_image["difference_ci95"][0] > 0.05


def test_families_from_a_manifest_and_the_direction_of_the_difference(tmp_path):
    a, b = _predictions(tmp_path / "a", {1, 2}, groups=False), _predictions(tmp_path / "b", {1}, groups=False)
    manifest = pd.read_csv(_predictions(tmp_path / "m", set()) / "predictions.csv")[["path", "label", "group"]]
    manifest.to_csv(tmp_path / "test.csv", index=False)
    r = compare(a, b, manifest=tmp_path / "test.csv")
    assert r["families"] == 10 and r["family_source"].startswith("families of")
    assert r["difference"] == pytest.approx(-0.1)
    low, high = r["difference_ci95"]
    assert low < -0.1 < high <= 0
    assert (r["wrong_in_both"], r["wrong_only_a"]) == (20, 20)


def test_a_difference_over_many_families_is_not_noise(tmp_path, capsys):
    a = _predictions(tmp_path / "a", set(range(0, 60, 10)), families=60)
    b = _predictions(tmp_path / "b", set(range(0, 60, 2)), families=60)
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["difference"] == pytest.approx(0.4)
    assert r["difference_ci95"][0] > 0.2
    assert "A better" in out and "+40.00 points" in out


def test_unreadable_images_are_left_out_of_both(tmp_path):
    a, b = _predictions(tmp_path / "a", set()), _predictions(tmp_path / "b", {0})
    for folder in (a, b):
        frame = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
        frame.loc[0, ["predicted", "error"]] = ["", "cannot identify image file"]
        frame.loc[0, "confidence"] = np.nan  # written as an empty cell, as evaluate does
        frame.to_csv(folder / "predictions.csv", index=False)
    r = compare(a, b)
    assert r["images"] == 199
    assert r["wrong_only_b"] == 19


@pytest.mark.parametrize("change, message", [
    (lambda f: f.iloc[1:], "cover different images .*'B/f0_c0.png' in .*a alone"),
    (lambda f: f.assign(label=np.where(f.index == 5, "A", f["label"])), "'B/f0_c5.png' has label 'B' in"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "listed twice"),
])
def test_evaluations_of_different_images_are_refused(tmp_path, change, message):
    a, b = _predictions(tmp_path / "a", set()), _predictions(tmp_path / "b", set())
    frame = pd.read_csv(b / "predictions.csv", keep_default_na=False)
    change(frame).to_csv(b / "predictions.csv", index=False)
    with pytest.raises(LeukonetError, match=message):
        compare(a, b)


def test_cli_errors_are_one_line(tmp_path, capsys):
    a = _predictions(tmp_path / "a", set(), groups=False)
    pd.DataFrame(dict(path=["x.png"], label=["A"])).to_csv(tmp_path / "flat.csv", index=False)
    assert main(["compare", str(a), str(a), "--manifest", str(tmp_path / "flat.csv")]) == 2
    assert "no `group` column" in capsys.readouterr().err
    # `leukonet predict` output has no labels to score
    pd.DataFrame(dict(path=["x.png"], predicted=["A"])).to_csv(tmp_path / "predicted.csv", index=False)
    assert main(["compare", str(a), str(tmp_path / "predicted.csv")]) == 2
    assert "no label column(s): not an evaluation's predictions" in capsys.readouterr().err
    assert main(["compare", str(a), str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no predictions.csv" in err and len(err.strip().splitlines()) == 1


def test_out_of_fold_predictions_of_two_cross_validations_compare(tmp_path):
    # a --folds run's folds.csv: fold, path, label, label_index, group, predicted, correct, ...
    a, b = _predictions(tmp_path / "a", {0, 5}), _predictions(tmp_path / "b", {5})
    for folder in (a, b):
        frame = pd.read_csv(folder / "predictions.csv", keep_default_na=False, dtype={"group": str})
        frame.insert(0, "fold", frame.index % 5)
        frame.insert(3, "label_index", (frame["label"] == "B").astype(int))
        frame.insert(6, "correct", frame["predicted"] == frame["label"])
        frame.to_csv(folder / "folds.csv", index=False)
    r = compare(a / "folds.csv", b / "folds.csv")
    assert r["families"] == 10 and r["difference"] == pytest.approx(-0.1)
    assert r["predictions_a"].endswith("folds.csv")
