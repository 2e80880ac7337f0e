import numpy as np
import pytest
from sklearn import metrics as skm

from leukonet.evaluate.metrics import classification_metrics, expected_calibration_error

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
    np.testing.assert_allclose(tables["confusion_normalised"].sum(1), 1.0)


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
