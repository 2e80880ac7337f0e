"""The domain check: is an image like the images a model was trained on?

A classifier trained on one lab's cells gives confident, wrong answers on another lab's
(another microscope, stain or crop): on such images the softmax confidence is no warning
(benchmarks/results/domain.md). Each run therefore keeps a compact description of its
training images in feature space (``domain.npz``): the class means of the penultimate
features (the input of the ``cell_type`` layer) and one shared covariance, estimated
with scikit-learn's Ledoit-Wolf shrinkage (a few hundred images per class cannot fill a
full covariance). An image's score is its Mahalanobis distance to the nearest class
mean (Lee et al. 2018, "A simple unified framework for detecting out-of-distribution
samples"); the threshold passes 95 % of the run's own validation images.

Written at the end of ``fit`` and by ``leukonet calibrate RUN`` (older runs).
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leukonet import io
from leukonet.errors import LeukonetError

FILE = "domain.npz"
QUANTILE = 0.95  # share of validation images that pass
MAX_TRAIN = 4000  # training images described (a stratified sample beyond that)
FEATURES = "features"


@dataclass
class Domain:
    means: np.ndarray  # (classes, features)
    precision: np.ndarray  # (features, features): inverse of the shared covariance
    threshold: float
    info: dict

    def score(self, features) -> np.ndarray:
        """Mahalanobis distance of each row to the nearest class mean (lower: more alike)."""
        f = np.asarray(features, dtype=np.float64)
        best = np.full(len(f), np.inf)
        for mean in self.means.astype(np.float64):
            d = f - mean
            best = np.minimum(best, np.einsum("ij,jk,ik->i", d, self.precision, d))
        return np.sqrt(np.maximum(best, 0.0))

    def flag(self, features):
        """(score, out of domain?) per row."""
        s = self.score(features)
        return s, s > self.threshold

    def save(self, folder):
        folder = Path(folder)
        with io.atomic_path(folder / FILE) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, means=self.means.astype(np.float32),
                         precision=self.precision.astype(np.float32),
                         threshold=np.float64(self.threshold),
                         info=np.array(json.dumps(self.info)))
        return folder / FILE

    @classmethod
    def load(cls, folder):
        """The run's description, or None when it has none (an older run)."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(z["means"], z["precision"], float(z["threshold"]),
                           json.loads(str(z["info"])))
        except (OSError, ValueError, KeyError) as e:
            raise LeukonetError(f"{path}: unreadable domain description ({e}); rebuild it with "
                                f"leukonet calibrate {Path(folder)}") from None


def fit_domain(train_features, train_labels, val_features, quantile=QUANTILE, info=None) -> Domain:
    """Class means and a shared Ledoit-Wolf covariance of ``train_features``; the threshold
    that ``quantile`` of ``val_features`` pass."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(train_features, dtype=np.float64)
    y = np.asarray(train_labels)
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    precision = LedoitWolf().fit(centred).precision_
    domain = Domain(means, precision, np.inf, {})
    val = domain.score(val_features)
    domain.threshold = float(np.quantile(val, quantile))
    domain.info = dict(info or {}, score="mahalanobis (nearest class mean, shared Ledoit-Wolf "
                       "covariance, penultimate features)", quantile=quantile,
                       train_images=int(len(x)), val_images=int(len(val)),
                       val_pass=float(np.mean(val <= domain.threshold)))
    return domain


def with_features(model):
    """``model`` with a second output, its penultimate features, under ``"features"``
    (dict outputs: ``predict_loader`` returns one array per output). For an ensemble, the
    features of its members side by side. None when they cannot be reached. Each new model
    traces its predict function anew: keep one per model (``Run.featured_model`` does)."""
    import keras

    from leukonet.models.build import OUTPUT
    from leukonet.models.ensemble import members

    parts = members(model)
    try:
        if parts == [model]:
            feats = model.get_layer(OUTPUT).input
        else:
            if len(model.inputs) > 1:
                return None  # members read images differently: not supported yet
            feats = keras.layers.Concatenate(name="member_features")(
                [keras.Model(m.inputs, m.get_layer(OUTPUT).input)(model.inputs[0]) for m in parts])
    except (ValueError, AttributeError):
        return None
    outputs = dict(model.output) if isinstance(model.output, dict) else {OUTPUT: model.output}
    outputs[FEATURES] = feats
    return keras.Model(model.inputs, outputs, name=f"{model.name}_with_features")


def _sample(frame, n, seed=0):
    if len(frame) <= n:
        return frame
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(frame, train_size=n, stratify=frame["label"], random_state=seed)
    return keep.sort_index()


def featured_for(model, domain, featured=None):
    """The model to predict with when checking against ``domain``: ``featured`` (the
    caller's ``with_features`` twin, kept across calls) or a new one; None without a
    domain (plain prediction)."""
    if domain is None:
        return None
    return featured if featured is not None else with_features(model)


def outputs_of(run, frame, data_root, workers=1):
    """(rows kept, class probabilities, penultimate features) of ``frame``'s readable
    images for ``run``."""
    from leukonet.evaluate.predict import predict_loader, run_loader

    model = run.featured_model
    if model is None:
        raise LeukonetError(f"{run.path}: the domain check does not support this model yet "
                            "(an ensemble whose members read images differently)")
    loader = run_loader(run.config, frame.assign(label_index=0), len(run.classes), data_root,
                        workers=workers)
    rows, out = predict_loader(model, loader)
    return rows, out["cell_type"], out[FEATURES]


def describe_run(run, data_root=None, train_manifest=None, val_manifest=None) -> Domain:
    """Compute and save ``RUN/domain.npz`` from the run's own training and validation
    manifests (or those given)."""
    import pandas as pd

    path = Path(run.path)
    train_csv = Path(train_manifest or path / "train_manifest.csv")
    val_csv = Path(val_manifest or path / "val_manifest.csv")
    for csv in (train_csv, val_csv):
        if not csv.is_file():
            raise LeukonetError(f"{csv}: not found; give the run's training and validation "
                                "manifests (--train-manifest, --val-manifest)")
    root = data_root or run.config.data_root
    if not root or not Path(root).is_dir():
        raise LeukonetError(f"--data-root {root}: no such folder; give the folder the run's "
                            "manifests are relative to")
    def read(csv):  # path and label only: the loader reads sizes from the images
        frame = pd.read_csv(csv, dtype={"path": str, "label": str}, keep_default_na=False)
        return frame[["path", "label"]]

    train, val = _sample(read(train_csv), MAX_TRAIN), read(val_csv)
    if not len(val):
        raise LeukonetError(f"{val_csv}: no validation images to set the threshold on")
    rows, _, train_f = outputs_of(run, train.reset_index(drop=True), root)
    _, _, val_f = outputs_of(run, val.reset_index(drop=True), root)
    labels = train.reset_index(drop=True)["label"].to_numpy()[rows]
    domain = fit_domain(train_f, labels, val_f, info=dict(
        train_manifest=str(train_csv), val_manifest=str(val_csv)))
    domain.save(path)
    return domain


def summary(scores, flagged, correct=None) -> dict:
    """What an evaluation records: how many images were flagged, and (with ``correct``)
    the accuracy of those that pass against those flagged."""
    flagged = np.asarray(flagged, dtype=bool)
    out = dict(images=int(len(flagged)), out_of_domain=int(flagged.sum()),
               out_of_domain_share=float(flagged.mean()) if len(flagged) else 0.0,
               median_score=float(np.median(scores)) if len(scores) else None)
    if correct is not None:
        correct = np.asarray(correct, dtype=bool)
        out["accuracy_in_domain"] = float(correct[~flagged].mean()) if (~flagged).any() else None
        out["accuracy_out_of_domain"] = float(correct[flagged].mean()) if flagged.any() else None
    return out


def warning_line(n_flagged, n, model_name):
    return (f"warning: out of domain: {n_flagged} of {n} images are unlike the images this model "
            f"was trained on (another lab, stain, scanner or crop?); their labels are unreliable. "
            f"Fine-tune first: leukonet fit --weights {model_name} on a few hundred labelled "
            f"cells of your own")


def unavailable_line(model_name):
    return (f"note: {model_name} has no domain description (trained before leukonet stored one): "
            f"no out-of-domain check; add it with: leukonet calibrate {model_name}")
