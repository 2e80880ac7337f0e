"""Classification metrics from true labels and predicted probabilities (scikit-learn)."""
import warnings

import numpy as np
import pandas as pd
from sklearn import metrics as skm


def expected_calibration_error(y_true, proba, bins=15):
    """Top-label ECE and the reliability table (bin, confidence, accuracy, count).

    scikit-learn's calibration_curve is per binary class; the multi-class top-label ECE
    (Guo et al. 2017) is the few lines below.
    """
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            conf, acc = confidence[mask].mean(), correct[mask].mean()
            ece += mask.mean() * abs(acc - conf)
            rows.append(dict(bin=b, low=edges[b], high=edges[b + 1], confidence=conf, accuracy=acc,
                             count=int(mask.sum())))
    return float(ece), pd.DataFrame(rows)


def _balanced_accuracy(y_true, y_pred):
    # scikit-learn warns when a predicted class has no image here; the evaluation says so
    # itself (metrics "note": classes absent from it)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(skm.balanced_accuracy_score(y_true, y_pred))


def classification_metrics(y_true, proba, classes):
    """Everything `leukonet evaluate` reports, as plain JSON-able values plus tables."""
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    labels = np.arange(len(classes))
    y_pred = proba.argmax(axis=1)
    present = sorted(set(y_true.tolist()))
    report = skm.classification_report(y_true, y_pred, labels=labels, target_names=classes,
                                       output_dict=True, zero_division=0)
    per_class = pd.DataFrame({c: report[c] for c in classes}).T[["precision", "recall", "f1-score", "support"]]
    per_class["support"] = per_class["support"].astype(int)
    counts = skm.confusion_matrix(y_true, y_pred, labels=labels)
    # a class with no images here has no recall (nor F1), and no precision unless predicted:
    # undefined, not 0 (scikit-learn's zero_division would print 0.0000)
    absent = per_class["support"] == 0
    per_class.loc[absent, ["recall", "f1-score"]] = np.nan
    per_class.loc[absent & (counts.sum(axis=0) == 0), "precision"] = np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    ece, reliability = expected_calibration_error(y_true, proba)
    out = dict(
        images=int(len(y_true)),
        accuracy=float(skm.accuracy_score(y_true, y_pred)),
        balanced_accuracy=_balanced_accuracy(y_true, y_pred),
        macro_f1=float(skm.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        top2_accuracy=float(skm.top_k_accuracy_score(y_true, proba, k=min(2, len(classes)), labels=labels))
        if len(classes) > 2 else float(skm.accuracy_score(y_true, y_pred)),
        expected_calibration_error=ece,
        per_class={c: {k: (int(v) if k == "support" else None if np.isnan(v) else float(v))
                       for k, v in row.items()} for c, row in per_class.iterrows()},
    )
    out["roc_auc_ovr"] = _roc_auc(y_true, proba, classes, present)
    missing = [classes[i] for i in labels if i not in present]
    if missing:
        out["note"] = f"no images of {', '.join(missing)}: their recall and ROC-AUC are undefined"
    tables = dict(
        per_class=per_class,
        confusion=pd.DataFrame(counts, index=classes, columns=classes),
        confusion_normalised=pd.DataFrame(normalised, index=classes, columns=classes),
        reliability=reliability,
    )
    return out, tables


def _roc_auc(y_true, proba, classes, present):
    """One-vs-rest ROC-AUC per class present (and their macro mean)."""
    result = {}
    for i, c in enumerate(classes):
        if i in present and len(present) > 1:
            result[c] = float(skm.roc_auc_score(y_true == i, proba[:, i]))
    if result:
        result["macro"] = float(np.mean(list(result.values())))
    return result


def family_metrics(y_true, y_pred, groups, classes, resamples=2000, seed=0):
    """Accuracy counted by family (all augmented copies of one source cell), and a 95 %
    interval that resamples families rather than images.

    Copies of one cell are right or wrong together, so the images of a test set are far
    from independent: blood-cells TEST is 2,487 images but 102 cells, 4 of them monocytes
    of ~155 images each. The interval is a percentile bootstrap over families (scipy,
    ``paired=True`` keeps each family's correct count with its size).
    """
    frame = pd.DataFrame({"group": np.asarray(groups), "label": np.asarray(classes)[y_true],
                          "correct": np.asarray(y_true) == np.asarray(y_pred),
                          "predicted": np.asarray(classes)[y_pred]})
    table = (frame.groupby(["label", "group"], sort=True)
             .agg(images=("correct", "size"), correct=("correct", "sum"),
                  most_predicted=("predicted", lambda s: s.value_counts().index[0]))
             .reset_index())
    table["accuracy"] = table["correct"] / table["images"]
    out = dict(families=int(len(table)),
               family_mean_accuracy=float(table["accuracy"].mean()),
               families_per_class={c: int((table["label"] == c).sum()) for c in classes},
               families_mostly_wrong=int((table["accuracy"] < 0.5).sum()))
    if len(table) > 1:
        out["accuracy_ci95_over_families"] = family_interval(
            (table["correct"], table["images"]), lambda c, n, axis=-1: c.sum(axis) / n.sum(axis),
            resamples, seed)
    return out, table.sort_values(["accuracy", "images"], ascending=[True, False])


def family_interval(columns, statistic, resamples=2000, seed=0):
    """95 % percentile-bootstrap interval [low, high] of ``statistic`` over families: each
    of ``columns`` holds one value per family, resampled together (scipy, ``paired=True``);
    ``statistic(*columns, axis)`` must be vectorised over ``axis``."""
    from scipy import stats

    ci = stats.bootstrap(tuple(np.asarray(c, float) for c in columns), statistic, paired=True,
                         vectorized=True, n_resamples=resamples, method="percentile",
                         random_state=np.random.default_rng(seed)).confidence_interval
    return [float(ci.low), float(ci.high)]
