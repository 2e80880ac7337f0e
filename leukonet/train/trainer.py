"""The single-model trainer: one model from a config, or a run folder to resume, to a
finished run directory. ``start`` reads the config, checks its options and resolves the
data and input size; ``train_started`` opens the run folder and trains in it (two-stage
fine-tuning, head-only training on cached features, resume after a kill); ``fit_one`` does
both, for the members of an ensemble and the fold models of cross-validation.

Your callbacks (``callbacks=[...]``: instances, handed down by fit, ensemble and folds) run
after leukonet's with those stored in the config (``user_callbacks.for_model``); your
backbone file is copied into a new run folder (``user_backbone.keep``).

It knows nothing of ensembles or folds (``leukonet.train.fit`` dispatches to those).
May import: the helper modules of leukonet.train (open_run, options, run_data, resume,
loaders, keras_setup, results, run, callbacks, features, user_callbacks) and
leukonet.models.user_backbone; never fit, folds or ensemble.
Training looks ``_callbacks`` up here: tests patch ``leukonet.train.trainer._callbacks``.
"""
import contextlib
import logging
import time
from typing import NamedTuple

from leukonet import io
from leukonet.compat import no_array_copy_warning
from leukonet.config import FitConfig
from leukonet.errors import LeukonetError
from leukonet.models import user_backbone
from leukonet.train import user_callbacks
from leukonet.train.keras_setup import (_callbacks, _compile, _monitor, keras_verbose,
                                        set_backbone_trainable)
from leukonet.train.loaders import (_class_weight, _clean_train_loader, _loaders,
                                    _precise_bn_loader)
from leukonet.train.open_run import _console, _log_file_only, open_run_dir
from leukonet.train.options import _check_options
from leukonet.train.results import _final_metrics, _summary
from leukonet.train.resume import _restored_epoch, _training_clock, _trim_history, _verify_data
from leukonet.train.run import Run, RunDir, default_run_dir
from leukonet.train.run_data import (_absolute_paths, _resolve_data, _resolve_size, _resume_data,
                                     _warn_overlap)

log = logging.getLogger("leukonet")


class Started(NamedTuple):
    """A run ready to train: its config (data paths absolute, options checked), folder,
    data and input size."""
    config: FitConfig
    run_dir: RunDir
    data: dict
    image_size: tuple


def start(config, resume=None):
    """``resume`` (a run folder) or else ``config``, checked and with its data resolved: a
    Started; or the finished Run when ``resume`` names a finished run (nothing to do)."""
    if resume is not None:
        run_dir = RunDir(resume)
        if not run_dir.config.is_file():
            raise LeukonetError(f"{resume}: nothing to resume (no config.json)")
        config = user_backbone.resolve(FitConfig.read(run_dir.config), run_dir.path)
        if run_dir.metrics.is_file() and run_dir.model.is_file():
            owner = run_dir.lock_owner()
            if owner:
                raise LeukonetError(f"{run_dir.path}: in use by process {owner}; wait for it or "
                                    "stop it")
            _console().info("%s: finished already (metrics.json, model.keras); nothing to "
                            "resume", run_dir.path)
            return Run(run_dir.path)
    else:
        run_dir = RunDir(config.run_dir or default_run_dir(config))
        config = _absolute_paths(config)
    _check_options(config)
    data = _resume_data(run_dir, config) if resume is not None else _resolve_data(config)
    return Started(config, run_dir, data, _resolve_size(config, data))


def train_started(started, resume, verbose=2, callbacks=None) -> Run:
    """Train the one model of ``started`` (from ``start``) in its run folder, opened and
    locked for it; ``callbacks``: the user's instances."""
    config, run_dir, data, image_size = started
    if config.folds > 1 or config.ensemble > 1:
        raise ValueError("a config of several models: leukonet.train.fit.fit dispatches it")
    if resume is None:
        config = config.replace(image_size=list(image_size), run_dir=str(run_dir.path))
    with open_run_dir(run_dir, config.overwrite, resume is not None):
        _fit_in(run_dir, config, data, image_size, resume, verbose, callbacks)
    return Run(run_dir.path)


def fit_one(config=None, resume=None, verbose=2, callbacks=None) -> Run:
    """Train one model from ``config`` (``--ensemble 1``, ``--folds 1``), or resume the run
    folder ``resume``; returns the Run."""
    started = start(config, resume)
    return started if isinstance(started, Run) else train_started(started, resume, verbose,
                                                                  callbacks)


def _fit_in(run_dir, config, data, image_size, resume, verbose, callbacks=None):
    """fit's work inside the opened run directory."""
    try:
        if resume is None:
            config, stored = user_backbone.keep(config, run_dir.path)  # your network, once
            io.write_json(run_dir.config, stored.to_dict())
            io.write_json(run_dir.path / "classes.json", {"classes": data["classes"]})
            io.write_csv(run_dir.train_manifest, data["train"].frame)
            io.write_csv(run_dir.val_manifest, data["val"].frame)
        log.info("%s run %s: %d training / %d validation images, %d classes, %s at %dx%d",
                 "resuming" if resume else "starting", run_dir.path, len(data["train"]),
                 len(data["val"]), len(data["classes"]), user_backbone.label(config.backbone),
                 *image_size)
        _warn_overlap(data["train"], data["val"])
        unseen = sorted(set(data["classes"]) - set(data["val"].frame["label"]))
        if unseen and len(data["val"]):
            log.warning("warning: no validation images of %s: a class with too few families "
                        "cannot be in every split; its accuracy is not measured",
                        ", ".join(unseen))
        if resume is not None:
            _verify_data(run_dir, data)
        from leukonet.tf_only import released_train_graphs

        with released_train_graphs():  # else each in-process fit keeps its graphs (TF bug)
            _train(config, run_dir, data, image_size, verbose,
                   user_callbacks.for_model(config.callbacks, callbacks))
    except KeyboardInterrupt:
        log.warning("interrupted; the last finished epoch is saved. Continue with: "
                    "leukonet fit --resume %s", run_dir.path)
        raise
    except LeukonetError as e:
        _log_file_only(f"error: {e}")  # the console gets it once, from the command
        raise


def _train(config, run_dir, data, image_size, verbose, user=()):
    """``user``: the user's callbacks, after leukonet's (and its NaN guard)."""
    import keras

    from leukonet.data.images import conversion_note, converted_files
    from leukonet.data.loader import loader_errors
    from leukonet.models.build import BACKBONE_LAYER, build_model
    from leukonet.train.callbacks import NanGuard
    from leukonet.tf_only import make_strategy, strategy_scope

    converted = converted_files()
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = make_strategy(config.strategy)
    train, val, aux_classes = _loaders(config, data, image_size)
    class_weight = _class_weight(config, data, aux_classes)
    with strategy_scope(strategy):
        model = build_model(config, len(data["classes"]), image_size, aux_classes=aux_classes)
    io.write_text(run_dir.summary, _summary(model, config, data, image_size))
    if config.cache_features:
        return _train_cached(config, run_dir, data, model, train, val, aux_classes, class_weight,
                             verbose, user)
    state = run_dir.read_state()
    two_stage = config.freeze_epochs > 0 and not config.freeze_backbone
    stages = []
    if config.freeze_backbone:
        stages.append(dict(stage=1, epochs=config.epochs, frozen=True, lr=config.lr))
    elif two_stage:
        stages.append(dict(stage=1, epochs=min(config.freeze_epochs, config.epochs), frozen=True,
                           lr=config.lr))
        stages.append(dict(stage=2, epochs=config.epochs, frozen=False,
                           lr=config.fine_tune_lr or config.lr / 10))
    else:
        stages.append(dict(stage=1, epochs=config.epochs, frozen=False, lr=config.lr))
    monitor = _monitor(config, validated=val is not None, multitask=bool(aux_classes))
    bn_loader = _precise_bn_loader(config, data, train)
    clock = _training_clock(state)
    nan = False
    initial_epoch = 0
    for s in stages:
        if s["stage"] in state.get("done_stages", []):
            initial_epoch = s["epochs"]
            if run_dir.last.is_file():
                _copy_weights(run_dir.last, model)
            continue
        with strategy_scope(strategy):
            if s["frozen"]:
                model.get_layer(BACKBONE_LAYER).trainable = False
            elif two_stage:
                set_backbone_trainable(model, config.unfreeze)
            else:
                model.get_layer(BACKBONE_LAYER).trainable = True
            first = stages[0]["epochs"] if s["stage"] == 2 else 0
            _compile(model, config, s["lr"], aux_classes,
                     decay_steps=(s["epochs"] - first) * len(train))
        if two_stage:
            log.info("stage %d: %s, lr %g, epochs %d-%d", s["stage"],
                     "backbone frozen" if s["frozen"] else f"fine-tuning (unfreeze {config.unfreeze})",
                     s["lr"], initial_epoch + 1, s["epochs"])
        restored = _restored_epoch(run_dir, s["stage"], initial_epoch)
        _trim_history(run_dir, restored)
        # the loader's epoch is Keras's: a resumed run reads the rows and augmentation of the
        # epoch it resumes at, as an unbroken one would
        train.epoch = restored
        guard = NanGuard()
        # shuffle=False: the loader shuffles its rows from (seed, epoch) itself; Keras' own
        # shuffle of the batch order draws on Python's global `random`, whose state a resumed
        # process does not have (a resumed run trained on the batches in another order).
        callbacks = _callbacks(config, run_dir, s["stage"], monitor, precise_bn=bn_loader,
                               validated=val is not None, resume_epoch=restored,
                               clock=clock) + [guard, *user]
        with loader_errors(train, val, bn_loader), no_array_copy_warning(), _files_closed(callbacks):
            model.fit(train, validation_data=val, epochs=s["epochs"], initial_epoch=initial_epoch,
                      shuffle=False, callbacks=callbacks, class_weight=class_weight,
                      verbose=keras_verbose(verbose))
        if guard.fired:
            nan = True
            break
        if config.ema and run_dir.last.is_file():
            # Keras ends fit by writing the average into the weights, but only right after
            # the last epoch (an early stop leaves the training weights): take the average
            # the last checkpoint holds, so the next stage starts from it either way.
            _copy_weights(run_dir.last, model)
        state = run_dir.read_state()
        state.setdefault("done_stages", []).append(s["stage"])
        io.write_json(run_dir.state, state)
        initial_epoch = s["epochs"]
    seconds = clock()
    note = conversion_note(converted)
    if note:
        log.info("%s", note)
    if train.bad:
        log.warning("skipped %d unreadable image(s) (--skip-bad-images):", len(train.bad))
        for path, reason in sorted(train.bad.items()):
            log.warning("  %s: %s", path, reason)
    state = run_dir.read_state()
    if nan:
        where = (f"the best checkpoint (epoch {state['best_epoch']}) is kept in {run_dir.model}"
                 if run_dir.model.is_file() else "no checkpoint was saved")
        raise LeukonetError(f"loss became NaN; training stopped and {where}; lower --lr")
    _final_metrics(run_dir, val, state, seconds, data, monitor)


def _train_cached(config, run_dir, data, model, train, val, aux_classes, class_weight, verbose,
                  user=()):
    """Head-only training on cached backbone features (see train/features.py)."""
    from leukonet.train import features as F
    from leukonet.train.callbacks import NanGuard

    if not config.freeze_backbone:
        raise LeukonetError("--cache-features needs --freeze-backbone: features of a backbone "
                            "that trains change every step")
    if config.head == "bilstm":
        raise LeukonetError("--cache-features cannot train the bilstm head: it reads the image "
                            "itself; use conv, gap or dense")
    start = time.perf_counter()
    clock = _training_clock(run_dir.read_state())
    extractor = F.feature_extractor(model)
    clean = _clean_train_loader(config, data, train, workers=config.workers)
    folder = run_dir.path / "features"
    train_paths = F.cache_features(extractor, clean, folder, "train", config.feature_views,
                                   train.policy)
    val_paths = F.cache_features(extractor, val, folder, "val")
    log.info("cached backbone features for %d views of %d training and %d validation images "
             "in %.1f s", config.feature_views, len(train.paths), len(val.paths),
             time.perf_counter() - start)
    head = F.head_model(config, tuple(extractor.output.shape[1:]), len(data["classes"]), aux_classes)
    train_f = F.FeatureLoader(train_paths, train._targets, len(train.paths), config.batch_size,
                              shuffle=True, seed=config.seed)
    # A head step is tiny, so Keras' per-step dispatch is most of it: run several steps per
    # call (epoch-level callbacks see no difference).
    _compile(head, config, config.lr, aux_classes, decay_steps=config.epochs * len(train_f),
             steps_per_execution=min(F.STEPS_PER_EXECUTION, len(train_f)))
    _compile(model, config, config.lr, aux_classes)  # saved compiled, like the normal path
    # its optimizer holds its variables, as a trained model's does: a checkpoint that
    # holds fewer would not load them back (Keras warns "Skipping variable loading")
    model.optimizer.build(model.trainable_variables)
    val_f = F.FeatureLoader(val_paths, val._targets, len(val.paths), config.batch_size)
    # a resumed run reads the view and order that the epoch it resumes at would have read
    train_f.epoch = _restored_epoch(run_dir, 1, 0)
    _trim_history(run_dir, train_f.epoch)
    guard = NanGuard()
    callbacks = _callbacks(config, run_dir, 1,
                           _monitor(config, validated=True, multitask=bool(aux_classes)),
                           export=lambda h: F.copy_head(h, model), resume_epoch=train_f.epoch,
                           clock=clock) + [guard, *user]
    with no_array_copy_warning(), _files_closed(callbacks):
        head.fit(F.keras_input(train_f), validation_data=F.keras_input(val_f), epochs=config.epochs,
                 shuffle=False,  # the feature loader shuffles from (seed, epoch): see _train
                 verbose=keras_verbose(verbose), callbacks=callbacks, class_weight=class_weight)
    state = run_dir.read_state()
    if guard.fired:
        raise LeukonetError(f"loss became NaN; training stopped (best checkpoint: epoch "
                            f"{state.get('best_epoch')}); lower --lr")
    _final_metrics(run_dir, val, state, clock(), data,
                   _monitor(config, validated=True, multitask=bool(aux_classes)))


@contextlib.contextmanager
def _files_closed(callbacks):
    """Keras' CSVLogger closes history.csv at the end of training only: an error mid-fit
    (a bad image, a user callback, Ctrl-C) would leave it open until garbage collection."""
    try:
        yield
    finally:
        for callback in callbacks:
            f = getattr(callback, "csv_file", None)
            if f is not None and not f.closed:
                f.close()


def _copy_weights(path, model):
    from leukonet.train.run import load_model

    with no_array_copy_warning():
        model.set_weights(load_model(path).get_weights())
