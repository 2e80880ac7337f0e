"""``leukonet fit --folds K``: k-fold cross-validation over families; the fold models averaged.

The training and validation rows together (whatever ``--manifest`` / ``--val-manifest``
gave) are cut into K folds of whole families (``data.splits.group_folds``). Member k is an
ordinary run in ``RUN/members/<k>/`` that trains on the other folds and is validated on
fold k (its manifests: ``RUN/folds/fold<k>_train.csv`` / ``_val.csv``). Afterwards:

- ``RUN/folds.csv``: every row, its fold, and the prediction of the one member that did not
  train on it (out-of-fold), with the class probabilities;
- ``metrics.json``: ``val_accuracy`` is that out-of-fold accuracy over all rows, and ``cv``
  holds each fold's accuracy, their mean and spread, and a 95 % interval over families;
- ``model.keras``: the K fold models averaged, like ``--ensemble`` (evaluate it on a test
  manifest: every training row was seen by K - 1 of its members, so it has no validation
  score of its own).

``--refit`` (cross-validate the recipe, then refit, as scikit-learn's ``cross_val_score``
then ``fit``): the fold models train without validation and keep their last epoch, as the
final model must (so no epoch is picked on the rows that score it); then one model trains
on all the rows (``RUN/refit/``) and becomes ``model.keras``. The out-of-fold accuracy is
its estimate, a slightly pessimistic one: each fold model saw (K - 1) / K of the rows.

Why: one validation split of ~50 families is a coarse draw (benchmarks/results/
accuracy_cpu.md: the same recipe scored 5 points above TEST on one draw and 6 below on
another); cross-validation scores every family once, so the estimate rests on all of them.
``--resume RUN`` after a kill skips the finished folds and resumes the interrupted one.

May import: ``ensemble`` (its members' training and combining), the single-model trainer's
modules and leukonet.models.user_backbone; never ``leukonet.train.fit``, the entry that
dispatches here.
"""
import logging

import numpy as np
import pandas as pd

from leukonet import io
from leukonet.errors import LeukonetError
from leukonet.models import user_backbone
from leukonet.train.ensemble import _COPIED, _combine, _finished, _stored_path, train_member
from leukonet.train.open_run import open_run_dir
from leukonet.train.run import Run

log = logging.getLogger("leukonet")


def fit_folds(config, run_dir, data, resume, verbose=2, callbacks=None) -> Run:
    """``--folds K``: write the folds (once), train the unfinished fold models, then combine
    them and score the out-of-fold predictions."""
    pool, fold = (None, None) if resume is not None else _folds(config, data)  # refused before
    with open_run_dir(run_dir, config.overwrite, resume is not None):    # the folder is made
        if resume is None:
            _write_folds(config, run_dir, data["classes"], pool, fold)
            config, stored = user_backbone.keep(config, run_dir.path)  # the fold models copy it
            # last: a kill before it leaves no half-made run to resume
            io.write_json(run_dir.config, stored.replace(run_dir=str(run_dir.path)).to_dict())
        paths = []
        for k in range(config.folds):
            path = run_dir.path / "members" / str(k)
            train, val = _fold_files(run_dir, k)
            # --refit: no validation in the fold models (val_fraction 0), like the final model
            member = config.replace(folds=1, ensemble=1, refit=False, manifest=str(train),
                                    val_manifest=None if config.refit else str(val),
                                    val_fraction=0 if config.refit else config.val_fraction,
                                    run_dir=str(path), name=None, overwrite=True)
            train_member(member, f"fold {k + 1}/{config.folds}", verbose, callbacks)
            paths.append(path)
            io.write_json(run_dir.state, dict(members_finished=k + 1))  # `ablate` resumes by it
        runs = _finished(paths)
        # each member was validated on other rows: the run's scores are the out-of-fold ones
        scores = _cross_validate(runs, run_dir, data["classes"])
        if not config.refit:
            _combine(runs, run_dir, scores=scores)
            return Run(run_dir.path)
        path = run_dir.path / "refit"
        final = config.replace(folds=1, ensemble=1, refit=False, manifest=str(_all_rows(run_dir)),
                               val_manifest=None, val_fraction=0, run_dir=str(path), name=None,
                               overwrite=True)
        train_member(final, "refit on all rows", verbose, callbacks)
        _adopt(Run(path), runs, run_dir, scores)
    return Run(run_dir.path)


def _all_rows(run_dir):
    return run_dir.path / "folds" / "all.csv"


def _adopt(final, runs, run_dir, scores):
    """``--refit``: the final model becomes the run's (model, manifests, classes); metrics
    are the out-of-fold scores plus the training totals of all K + 1 fits."""
    for name in (*_COPIED, "history.csv", "model.keras"):
        io.write_bytes(run_dir.path / name, (final.path / name).read_bytes())
    fits = [*runs, final]
    metrics = dict(refit=dict(path=_stored_path(run_dir, final.path), **final.metrics),
                   members=[dict(path=_stored_path(run_dir, r.path), seed=r.config.seed) for r in runs],
                   train_images=final.metrics.get("train_images"),
                   epochs_run=final.metrics.get("epochs_run"),
                   train_seconds=round(sum(r.metrics.get("train_seconds", 0.0) for r in fits), 1),
                   **scores)
    metrics["val_accuracy_is"] += ("; it estimates model.keras, trained afterwards on all the rows "
                                   "(refit/), from models that saw (K - 1) / K of them")
    io.write_json(run_dir.metrics, metrics)
    log.info("refit on all %d rows -> %s; its estimate: %.4f out of fold", final.metrics.get(
        "train_images"), run_dir.model, scores["val_accuracy"])


def _fold_files(run_dir, k):
    folder = run_dir.path / "folds"
    return folder / f"fold{k}_train.csv", folder / f"fold{k}_val.csv"


def _folds(config, data):
    """The train+val rows and the fold of each (whole families, stratified)."""
    from leukonet.data.splits import group_folds

    pool = pd.concat([data["train"].frame, data["val"].frame], ignore_index=True)
    if "group" not in pool or pool["group"].isna().any():
        raise LeukonetError(f"--folds {config.folds}: {config.manifest} has rows without a `group` "
                            "(family) column; build the manifest with `leukonet manifest build`")
    return pool, group_folds(pool["label"].to_numpy(), pool["group"].to_numpy(), config.folds,
                             config.seed)


def _write_folds(config, run_dir, classes, pool, fold):
    """One manifest pair per fold (``split`` set to train / val, so each member reads them
    as given)."""
    # the class order beside the fold manifests, so a fold that lacks a class keeps it
    io.write_json(run_dir.path / "folds" / "classes.json", {"classes": classes})
    for k in range(config.folds):
        train, val = _fold_files(run_dir, k)
        io.write_csv(train, pool[fold != k].assign(split="train"))
        io.write_csv(val, pool[fold == k].assign(split="val"))
    if config.refit:
        io.write_csv(_all_rows(run_dir), pool.assign(split="train"))
    log.info("cross-validation: %d folds over %d families (%d images), seed %d", config.folds,
             pool["group"].nunique(), len(pool), config.seed)


def _cross_validate(runs, run_dir, classes):
    """Each member predicts its own validation fold: writes ``folds.csv`` and returns the
    metrics.json scores: ``val_accuracy`` (out-of-fold, over every row) and ``cv``."""
    from leukonet.evaluate.metrics import family_metrics
    from leukonet.evaluate.predict import predict_loader, predictions_table, run_loader

    parts, predicted, per_fold = [], [], []
    for k, run in enumerate(runs):
        frame = pd.read_csv(_fold_files(run_dir, k)[1])  # (a --refit member has no validation)
        loader = run_loader(run.config, frame, len(classes), cache_dir=run.config.cache_dir)
        rows, proba = predict_loader(run.model, loader)
        part = predictions_table(frame["path"].to_numpy()[rows], proba, classes)
        known = frame.iloc[rows]
        part.insert(0, "fold", k)
        part.insert(2, "label", known["label"].to_numpy())
        part.insert(3, "label_index", known["label_index"].to_numpy())
        part.insert(4, "group", known["group"].to_numpy())
        part.insert(6, "correct", part["predicted"] == part["label"])
        parts.append(part)
        predicted.append(proba.argmax(axis=1))
        per_fold.append(dict(fold=k, images=int(len(part)), families=int(part["group"].nunique()),
                             accuracy=float(part["correct"].mean())))
    table = pd.concat(parts, ignore_index=True)
    io.write_csv(run_dir.path / "folds.csv", table)
    by_family, _ = family_metrics(table["label_index"].to_numpy(), np.concatenate(predicted),
                                  table["group"].to_numpy(), classes)
    accs = np.array([f["accuracy"] for f in per_fold])
    cv = dict(folds=per_fold, accuracy=float(table["correct"].mean()),
              fold_accuracy_mean=float(accs.mean()), fold_accuracy_sd=float(accs.std(ddof=1)),
              fold_accuracy_range=[float(accs.min()), float(accs.max())], **by_family)
    interval = cv.get("accuracy_ci95_over_families")
    log.info("cross-validation over %d folds: accuracy %.4f out of fold (folds %s; sd %.4f)%s -> %s",
             len(runs), cv["accuracy"], ", ".join(f"{a:.4f}" for a in accs), cv["fold_accuracy_sd"],
             f"; 95 % interval over {cv['families']} families {interval[0]:.4f}-{interval[1]:.4f}"
             if interval else "", run_dir.path / "folds.csv")
    return dict(val_accuracy=cv["accuracy"], val_images=int(len(table)), cv=cv,
                val_accuracy_is="out-of-fold: each row predicted by the fold model that did not "
                                "train on it")
