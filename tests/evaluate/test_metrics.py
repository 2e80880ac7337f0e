import numpy as np
import pytest
from sklearn import metrics as skm

from leukonet.evaluate.metrics import (classification_metrics, expected_calibration_error,
                                       family_metrics)

CLASSES = ["A", "B", "C", "D"]


@pytest.fixture
def fixture():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    logits = rng.normal(0, 1, (200, 4))
    logits[np.arange(200), y] += 1.2  # better than chance, far from perfect
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba


def test_metrics_equal_scikit_learn(fixture):
    y, proba = fixture
    pred = proba.argmax(1)
    m, tables = classification_metrics(y, proba, CLASSES)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(y, proba, k=2))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred)
    np.testing.assert_allclose(tables["per_class"]["precision"], p)
    np.testing.assert_allclose(tables["per_class"]["recall"], r)
    np.testing.assert_array_equal(tables["per_class"]["support"], s)
    assert m["roc_auc_ovr"]["macro"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert tables["confusion"].to_numpy().sum() == len(y)
    np.testing.assert_array_equal(tables["confusion"].to_numpy(), skm.confusion_matrix(y, pred))
    np.testing.assert_allclose(tables["confusion_normalised"].sum(axis=1), 1.0)


def test_missing_class_is_noted(fixture):
    y, proba = fixture
    keep = y != 3
    m, tables = classification_metrics(y[keep], proba[keep], CLASSES)
    assert "no images of D" in m["note"]
    assert tables["confusion"].loc["D"].sum() == 0
    assert "D" not in m["roc_auc_ovr"]


def test_ece_on_a_hand_made_case():
    # 4 predictions at confidence 0.9, 3 right: |0.75 - 0.9| = 0.15
    proba = np.array([[0.9, 0.1]] * 4)
    ece, table = expected_calibration_error(np.array([0, 0, 0, 1]), proba)
    assert ece == pytest.approx(0.15)
    assert table["count"].sum() == 4


def test_family_metrics_count_each_family_once():
    # 3 families: 10 images all right, 2 images all right, 8 images all wrong
    y = np.array([0] * 10 + [1] * 2 + [2] * 8)
    pred = np.array([0] * 10 + [1] * 2 + [3] * 8)
    groups = np.array([5] * 10 + [6] * 2 + [7] * 8)
    out, table = family_metrics(y, pred, groups, CLASSES)
    assert out["families"] == 3 and out["families_mostly_wrong"] == 1
    assert out["family_mean_accuracy"] == pytest.approx(2 / 3)  # images: 12 / 20
    assert out["families_per_class"] == {"A": 1, "B": 1, "C": 1, "D": 0}
    first = table.iloc[0]  # worst first
    assert (first["group"], first["label"], first["most_predicted"], first["accuracy"]) == (7, "C", "D", 0)


def test_family_interval_is_wider_when_copies_agree():
    rng = np.random.default_rng(1)
    right = rng.random(40) < 0.8  # 40 source cells, each right or wrong as a whole
    y = np.zeros(40 * 25, int)
    pred = np.where(np.repeat(right, 25), 0, 1)
    copies, _ = family_metrics(y, pred, np.repeat(np.arange(40), 25), CLASSES)
    single, _ = family_metrics(y, pred, np.arange(40 * 25), CLASSES)  # every image its own family
    p = right.mean()
    for out in (copies, single):
        low, high = out["accuracy_ci95_over_families"]
        assert low < p < high
    width = np.diff(copies["accuracy_ci95_over_families"])[0]
    # 1,000 independent images: about the binomial +-1.96 sd; 40 families: about 5x wider
    binomial = 2 * 1.96 * np.sqrt(p * (1 - p) / 1000)
    assert np.diff(single["accuracy_ci95_over_families"])[0] == pytest.approx(binomial, rel=0.2)
    assert width > 3 * binomial
