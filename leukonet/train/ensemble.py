"""Ensemble runs: train several members, or combine finished runs, into one run directory.

``leukonet fit --ensemble N`` trains N members one after another as ordinary runs in
``RUN/members/<k>/`` (seeds seed, seed + 1, ...; ``--resume RUN`` after a kill skips the
finished members and resumes the interrupted one), then combines them;
``leukonet ensemble RUN RUN ... --out DIR`` combines runs that are already finished. The
result is a run directory like any other, whose ``model.keras`` averages the members'
probabilities (``leukonet.models.ensemble``): evaluate, predict, export and report work on
it unchanged, and Grad-CAM averages the members' maps. Members may read images differently
(input size, nucleus crop): the ensemble model then takes one input per view and its
loaders feed each (``leukonet.data.views``); Grad-CAM is refused for such an ensemble,
whose members' maps lie on different pixels.

Why: a from-scratch model on blood-cells moves by several points of validation accuracy
from epoch to epoch and seed to seed (benchmarks/results/accuracy_cpu.md); averaging
models is the standard cure for that variance.

The user's callbacks (instances) go to every member; a user's backbone file is copied into
the ensemble's folder, and from there into each member's.

May import: the single-model trainer (``trainer.fit_one``), the modules below it and
leukonet.models.user_backbone; never
``leukonet.train.fit`` (the entry that dispatches here) nor ``folds`` (which builds on this).
"""
import logging
import time
from pathlib import Path

import numpy as np

from leukonet import io
from leukonet.compat import no_array_copy_warning
from leukonet.errors import LeukonetError
from leukonet.models import user_backbone
from leukonet.train.open_run import open_run_dir
from leukonet.train.run import Run, RunDir
from leukonet.train.trainer import fit_one

log = logging.getLogger("leukonet")
_COPIED = ("classes.json", "train_manifest.csv", "val_manifest.csv")  # from the first member


def fit_ensemble(config, run_dir, resume, verbose=2, callbacks=None) -> Run:
    """``--ensemble N``: train the members that are not finished, then combine them."""
    with open_run_dir(run_dir, config.overwrite, resume is not None):
        if resume is None:
            config, stored = user_backbone.keep(config, run_dir.path)
            io.write_json(run_dir.config, stored.replace(run_dir=str(run_dir.path)).to_dict())
        listed = config.extra.get("ensemble_members", [])
        if any(Path(m["path"]).is_absolute() for m in listed):
            # made by `leukonet ensemble` from runs elsewhere: nothing to train, recombine
            return _combine(_finished([Path(m["path"]) for m in listed]), run_dir)
        paths = []
        for k in range(config.ensemble):
            path = run_dir.path / "members" / str(k)
            train_member(config.replace(ensemble=1, seed=config.seed + k, run_dir=str(path),
                                        name=None, overwrite=True),
                         f"ensemble member {k + 1}/{config.ensemble}", verbose, callbacks)
            paths.append(path)
            io.write_json(run_dir.state, dict(members_finished=k + 1))  # `ablate` resumes by it
        return _combine(_finished(paths), run_dir)


def train_member(member_config, what, verbose, callbacks=None):
    """Train one member into ``member_config.run_dir``: skipped when finished, resumed when
    started (after a kill), else started (also used by ``--folds``); ``callbacks``: the
    user's instances."""
    path = Path(member_config.run_dir)
    member = RunDir(path)
    if member.metrics.is_file():
        log.info("%s: finished earlier (%s)", what, path)
    elif member.config.is_file():
        log.info("%s: resuming %s", what, path)
        fit_one(resume=path, verbose=verbose, callbacks=callbacks)
    else:
        log.info("%s: seed %d -> %s", what, member_config.seed, path)
        fit_one(member_config, verbose=verbose, callbacks=callbacks)


def ensemble(runs, out, overwrite=False) -> Run:
    """An ensemble run in ``out`` from finished runs with the same classes (any backbones,
    input sizes and nucleus crops)."""
    if len(runs) < 2:
        raise LeukonetError("an ensemble needs at least two runs")
    run_dir = RunDir(out)
    target = run_dir.path.resolve()
    for r in runs:
        if Path(r).resolve() == target or target in Path(r).resolve().parents:
            raise LeukonetError(f"--out {out}: holds the run {r}; choose a folder outside the runs "
                                "to combine")
    members = _finished(runs)  # checked before --out is touched
    with open_run_dir(run_dir, overwrite, resume=False):
        return _combine(members, run_dir)


def _stored_path(run_dir, path):
    """A member's path as config.json keeps it: relative to the ensemble when inside it
    (the folder can move), else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(run_dir.path.resolve()).as_posix()
    except ValueError:
        return str(path)


def _finished(paths):
    """The runs at ``paths``, checked to be finished single-task runs with the same classes."""
    runs = [Run(p) for p in paths]
    first = runs[0]
    for run in runs:
        if not run.dir.model.is_file():
            raise LeukonetError(f"{run.path}: no model.keras (the run has not finished an epoch); "
                                "finish it or leave it out")
        if run.config.ensemble > 1:
            raise LeukonetError(f"{run.path}: already an ensemble; combine its members "
                                f"({run.path}/members/...) or the runs it was made of")
        if run.config.multitask:
            raise LeukonetError(f"{run.path}: a multi-task run; an ensemble averages the cell-type "
                                "output of single-task runs only")
        if run.classes != first.classes:
            raise LeukonetError(f"{run.path}: classes {', '.join(run.classes)} differ from "
                                f"{first.path}'s ({', '.join(first.classes)})")
    return runs


def _combine(runs, run_dir, scores=None) -> Run:
    """Write the ensemble of ``runs`` (from ``_finished``) into ``run_dir``: config,
    manifests, model.keras and metrics.json, with ``scores`` (``--folds``: the out-of-fold
    ones) or else the ensemble's own validation score where the members share one."""
    from leukonet.data.views import run_views, views_extra  # Keras: not at import
    from leukonet.models.ensemble import build_ensemble_model

    start = time.perf_counter()
    member_views = [run_views(r.config)[0] for r in runs]
    views = list(dict.fromkeys(member_views))  # distinct, in the members' order
    model = build_ensemble_model([r.model for r in runs], [views.index(v) for v in member_views])
    listed = [dict(path=_stored_path(run_dir, r.path), backbone=r.config.backbone, seed=r.config.seed,
                   image_size=list(v[0]), nucleus_crop=v[1], val_accuracy=r.metrics.get("val_accuracy"))
              for r, v in zip(runs, member_views)]
    base = Run(run_dir.path).config if run_dir.config.is_file() else runs[0].config
    extra = {k: v for k, v in base.extra.items() if k != "views"}
    extra["ensemble_members"] = listed
    if len(views) > 1:
        extra["views"] = views_extra(views)
    config = base.replace(image_size=list(views[0][0]), nucleus_crop=views[0][1],
                          run_dir=str(run_dir.path), ensemble=len(runs), overwrite=False, extra=extra)
    io.write_json(run_dir.config, config.to_dict())
    for name in _COPIED:
        if (runs[0].path / name).is_file():
            io.write_bytes(run_dir.path / name, (runs[0].path / name).read_bytes())
    with io.atomic_path(run_dir.model) as tmp, no_array_copy_warning():
        model.save(tmp)
    # summed over the members: `ablate` reports train_images x epochs_run / train_seconds
    metrics = dict(members=listed, train_images=runs[0].metrics.get("train_images"),
                   epochs_run=sum(r.metrics.get("epochs_run") or 0 for r in runs),
                   train_seconds=round(sum(r.metrics.get("train_seconds", 0.0) for r in runs), 1))
    metrics.update(_validation(runs, model, config) if scores is None else scores)
    metrics["combine_seconds"] = round(time.perf_counter() - start, 1)
    io.write_json(run_dir.metrics, metrics)
    if scores is None and "val_accuracy" in metrics:
        scores = ", ".join(f"{m['val_accuracy']:.4f}" for m in listed if m["val_accuracy"] is not None)
        log.info("ensemble of %d: validation accuracy %.4f (members: %s) -> %s", len(runs),
                 metrics["val_accuracy"], scores, run_dir.model)
    return Run(run_dir.path)


def _validation(runs, model, config):
    """The ensemble's validation accuracy and loss (``config``: the ensemble's, its views
    included), when every member was validated on the same rows (otherwise one member's
    validation images may be another's training images)."""
    import keras
    import pandas as pd

    from leukonet.evaluate.predict import predict_loader, run_loader

    files = [r.path / "val_manifest.csv" for r in runs]
    if not all(f.is_file() for f in files) or len({f.read_bytes() for f in files}) != 1:
        log.warning("warning: the members were validated on different rows, so the ensemble has "
                    "no validation score; evaluate it on a test manifest")
        return {}
    if not config.data_root or not Path(config.data_root).is_dir():
        log.warning("warning: data root %s not found, so the ensemble has no validation score",
                    config.data_root)
        return {}
    frame = pd.read_csv(files[0])
    if frame.empty:  # members trained without validation (--val-fraction 0)
        log.warning("warning: the members had no validation rows, so the ensemble has no "
                    "validation score; evaluate it on a test manifest")
        return {}
    loader = run_loader(config, frame, len(runs[0].classes))
    rows, proba = predict_loader(model, loader)
    y = frame["label_index"].to_numpy()[rows]
    # the members' own loss (their label smoothing included), so val_loss compares with theirs
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    onehot = np.eye(len(runs[0].classes), dtype=np.float32)[y]
    return dict(val_accuracy=float((proba.argmax(axis=1) == y).mean()),
                val_loss=float(keras.ops.convert_to_numpy(loss(onehot, proba))), val_images=int(len(y)))
