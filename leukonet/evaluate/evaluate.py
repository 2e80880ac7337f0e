"""evaluate(run, manifest): metrics, tables and figures under ``RUN/eval/<manifest>/``."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leukonet import io
from leukonet.errors import LeukonetError
from leukonet.evaluate import domain as D
from leukonet.evaluate import metrics as M
from leukonet.evaluate import plots
from leukonet.evaluate.predict import predict_loader, predictions_table, run_loader


@dataclass
class Evaluation:
    metrics: dict
    tables: dict
    figures: dict = field(default_factory=dict)  # name -> matplotlib Figure
    dir: Path | None = None

    def __repr__(self):
        return (f"<Evaluation accuracy={self.metrics['accuracy']:.4f} "
                f"balanced={self.metrics['balanced_accuracy']:.4f} images={self.metrics['images']}>")


def run_classes(run_path):
    path = Path(run_path) / "classes.json"
    if path.is_file():
        return json.loads(path.read_text())["classes"]
    frame = pd.read_csv(Path(run_path) / "train_manifest.csv")
    pairs = frame[["label_index", "label"]].drop_duplicates().sort_values("label_index")
    return list(pairs["label"])


def _frame_for(manifest_path, classes):
    from leukonet.data.manifest import Manifest

    m = Manifest.read_csv(manifest_path)
    unknown = sorted(set(m.frame["label"]) - set(classes))
    if unknown:
        lower = {c.lower() for c in classes}
        fix = ("; the names differ only in case: rename the labels in the manifest"
               if all(u.lower() in lower for u in unknown) else
               "; to score other classes, fine-tune on them first (leukonet fit --weights "
               "<this model> ...)")
        raise LeukonetError(f"{manifest_path}: class(es) {', '.join(unknown)} unknown to the model, "
                            f"which knows {', '.join(classes)}{fix}")
    frame = m.frame.copy()
    frame["label_index"] = frame["label"].map({c: i for i, c in enumerate(classes)}).astype(int)
    return frame, m.has_groups


def evaluate(run, manifest, data_root, tta=0, batch_size=None, figures=True, out_dir=None):
    config, classes = run.config, run_classes(run.path)
    frame, has_groups = _frame_for(manifest, classes)
    if not Path(data_root).is_dir():
        raise LeukonetError(f"--data-root {data_root}: no such folder")
    loader = run_loader(config, frame, len(classes), data_root, batch_size, workers=1)
    domain = run.domain
    featured = run.featured_model if domain is not None else None
    rows, proba = predict_loader(featured or run.model, loader, tta=tta)
    aux, flags = None, None
    if isinstance(proba, dict):
        if featured is not None:
            flags = domain.flag(proba.pop(D.FEATURES))
        aux = {k: v for k, v in proba.items() if k != "cell_type"}
        proba = proba["cell_type"]
    y = frame["label_index"].to_numpy()[rows]
    result, tables = M.classification_metrics(y, proba, classes)
    if flags is not None:  # how many are unlike the training images, and how those fare
        result["domain"] = dict(D.summary(*flags, correct=proba.argmax(axis=1) == y),
                                threshold=domain.threshold)
    result.update(manifest=str(manifest), data_root=str(data_root), tta=int(tta),
                  unreadable=dict(loader.bad))
    if aux and config.multitask:
        mapping = config.multitask["map"]
        aux_classes = sorted(set(mapping[c] for c in classes))
        name = config.multitask["name"]
        y_aux = np.array([aux_classes.index(mapping[classes[i]]) for i in y])
        result[name], _ = M.classification_metrics(y_aux, aux[name], aux_classes)
    if has_groups:
        result["by_family"], tables["families"] = M.family_metrics(
            y, proba.argmax(axis=1), frame["group"].to_numpy()[rows], classes)
    out = Path(out_dir) if out_dir else Path(run.out_dir) / "eval" / Path(manifest).stem
    predictions = predictions_table(frame["path"].to_numpy()[rows], proba, classes, loader.bad,
                                    domain_flags=flags)
    predictions.insert(1, "label", list(frame["label"].to_numpy()[rows]) + [""] * len(loader.bad))
    if has_groups:  # lets `leukonet compare` pair two evaluations family by family
        predictions.insert(2, "group", list(frame["group"].astype(str).to_numpy()[rows]) + [""] * len(loader.bad))
    io.write_json(out / "metrics.json", result)
    io.write_csv(out / "predictions.csv", predictions)
    for name in ("per_class", "confusion", "confusion_normalised"):
        io.write_csv(out / f"{name}.csv", tables[name], index=True)
    io.write_csv(out / "reliability.csv", tables["reliability"])
    if "families" in tables:
        io.write_csv(out / "families.csv", tables["families"])
    evaluation = Evaluation(result, tables, dir=out)
    if figures:
        evaluation.figures = make_figures(run, loader, rows, y, proba, tables, result, classes)
        for name, fig in evaluation.figures.items():
            plots.save(fig, out / f"{name}.png")
            plots.close(fig)
    return evaluation


def make_figures(run, loader, rows, y, proba, tables, result, classes, top=12):
    figs = dict(confusion=plots.confusion(tables["confusion"], tables["confusion_normalised"]),
                reliability=plots.reliability(tables["reliability"], result["expected_calibration_error"]))
    history = run.history
    if len(history):
        figs["curves"] = plots.curves(history)
    loss = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1))
    wrong = np.flatnonzero(proba.argmax(axis=1) != y)
    worst = wrong[np.argsort(-loss[wrong])][:top]
    if len(worst):
        pics = [loader.load(int(rows[k])) for k in worst]
        caps = [f"{classes[y[k]]}\n→ {classes[proba[k].argmax()]} ({proba[k].max():.2f})" for k in worst]
        figs["top_losses"] = plots.labelled_grid(pics, caps)
    return figs
