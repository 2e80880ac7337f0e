"""fit(config) -> Run: the entry point, for one model, an ensemble or a cross-validation.

The CLI's ``leukonet fit`` and the Python ``leukonet.fit(...)`` both end here. ``fit``
applies the overrides (and the backbone of shipped weights), lets the single-model trainer
check the config and resolve the data (``trainer.start``), then dispatches: ``--folds K``
to ``folds.fit_folds``, ``--ensemble N`` to ``ensemble.fit_ensemble``, else
``trainer.train_started``.

Users' own objects come in here: ``callbacks=[...]`` (``user_callbacks``: stored in the
config where they can be, handed down to every model trained) and ``backbone=<keras.Model>``
or a ``.keras`` file (``leukonet.models.user_backbone``: checked, then copied into the run
folders).

May import: any module of leukonet.train, and leukonet.models.user_backbone. None of them
imports this one: folds and ensemble train their models through the trainer
(tests/train/test_layout.py checks).
"""
import logging
import shutil

from leukonet.config import FitConfig
from leukonet.errors import LeukonetError
from leukonet.models import user_backbone
from leukonet.train import user_callbacks
from leukonet.train.ensemble import fit_ensemble
from leukonet.train.folds import fit_folds
# The trainer's parts that lived here before, importable from here as they were. Training
# looks `_callbacks` up in leukonet.train.trainer: patch it there, not here.
from leukonet.train.keras_setup import _callbacks, _compile, _monitor, set_backbone_trainable
from leukonet.train.loaders import _class_weight, _loaders
from leukonet.train.open_run import open_run_dir
from leukonet.train.run import Run
from leukonet.train.run_data import _resolve_data
from leukonet.train.trainer import start, train_started

log = logging.getLogger("leukonet")

__all__ = ["fit", "backbone_from_weights", "open_run_dir", "set_backbone_trainable", "_callbacks",
           "_class_weight", "_compile", "_loaders", "_monitor", "_resolve_data"]


def fit(config: FitConfig | None = None, resume=None, verbose=2, callbacks=None,
        **overrides) -> Run:
    """Train a classifier; returns the Run. ``resume``: a run directory to continue.
    ``callbacks``: your Keras callbacks, run after leukonet's in every model trained.
    ``backbone`` (an override) may be your own headless ``keras.Model``."""
    callbacks = user_callbacks.given(callbacks)
    temporary = None
    try:
        if resume is None:
            given = config
            config = (config or FitConfig()).replace(**overrides) if overrides else (config or FitConfig())
            if given is None and "backbone" not in overrides:
                config = backbone_from_weights(config)
            config = user_callbacks.record(config, callbacks)
            config, temporary = user_backbone.prepare(config)  # your network: checked, copied
        started = start(config, resume)  # resume: the run's config.json, not config
        if isinstance(started, Run):  # resume named a finished run
            return started
        user_callbacks.check(started.config.callbacks)  # a bad spec: refused before training
        user_callbacks.warn_unstored(callbacks, started.run_dir.path)
        if started.config.folds > 1:  # the data checked; fold models are ordinary runs inside this one
            run = fit_folds(started.config, started.run_dir, started.data, resume, verbose, callbacks)
        elif started.config.ensemble > 1:  # the data checked; members are ordinary runs inside this one
            run = fit_ensemble(started.config, started.run_dir, resume, verbose, callbacks)
        else:
            run = train_started(started, resume, verbose, callbacks)
    finally:
        if temporary is not None:  # the run folders hold their copies
            shutil.rmtree(temporary, ignore_errors=True)
    describe_domain(run)
    return run


def describe_domain(run):
    """The out-of-domain check's description of the training images (RUN/domain.npz,
    ``leukonet.evaluate.domain``), written once a run is finished; a failure costs the
    check, never the run."""
    from leukonet.evaluate.domain import FILE, describe_run

    if (run.path / FILE).is_file() or not run.dir.model.is_file():
        return
    try:
        d = describe_run(Run(run.path))  # its own Run: the one returned keeps no model loaded
    except LeukonetError as e:
        log.warning("warning: no out-of-domain check for this run (%s); add it later with: "
                    "leukonet calibrate %s", e, run.path)
        return
    log.info("out-of-domain check: described %d training images; %.0f %% of %d validation "
             "images pass -> %s", d.info["train_images"], 100 * d.info["val_pass"],
             d.info["val_images"], run.path / FILE)


def backbone_from_weights(config):
    """Shipped weights (``weights="pbc"``) bring their architecture when no backbone was
    named: the default backbone could not take them."""
    from leukonet.models.weights import backbone_of

    backbone = backbone_of(config.weights)
    return config.replace(backbone=backbone) if backbone else config
