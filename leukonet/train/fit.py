"""fit(config) -> Run: data, model, callbacks, two-stage fine-tuning, resume.

The CLI's ``leukonet fit`` and the Python ``leukonet.fit(...)`` both end here.
"""
import contextlib
import importlib.util
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from leukonet import io
from leukonet.config import FitConfig, parse_size
from leukonet.errors import LeukonetError
from leukonet.train.run import Run, RunDir, default_run_dir, read_history

log = logging.getLogger("leukonet")


def fit(config: FitConfig | None = None, resume=None, verbose=2, **overrides) -> Run:
    """Train a classifier; returns the Run. ``resume``: a run directory to continue."""
    if resume is not None:
        run_dir = RunDir(resume)
        if not run_dir.config.is_file():
            raise LeukonetError(f"{resume}: nothing to resume (no config.json)")
        config = FitConfig.read(run_dir.config)
        if run_dir.metrics.is_file() and run_dir.model.is_file():
            owner = run_dir.lock_owner()
            if owner:
                raise LeukonetError(f"{run_dir.path}: in use by process {owner}; wait for it or "
                                    "stop it")
            _console().info("%s: finished already (metrics.json, model.keras); nothing to "
                            "resume", run_dir.path)
            return Run(run_dir.path)
    else:
        given = config
        config = (config or FitConfig()).replace(**overrides) if overrides else (config or FitConfig())
        if given is None and "backbone" not in overrides:
            config = backbone_from_weights(config)
        run_dir = RunDir(config.run_dir or default_run_dir(config))
        config = _absolute_paths(config)
    _check_options(config)
    data = _resume_data(run_dir, config) if resume is not None else _resolve_data(config)
    image_size = _resolve_size(config, data)
    if config.folds > 1:  # the data checked above; fold models are ordinary runs inside this one
        from leukonet.train.folds import fit_folds

        return fit_folds(config, run_dir, data, resume, verbose)
    if config.ensemble > 1:  # the data checked above; members are ordinary runs inside this one
        from leukonet.train.ensemble import fit_ensemble

        return fit_ensemble(config, run_dir, resume, verbose)
    if resume is None:
        config = config.replace(image_size=list(image_size), run_dir=str(run_dir.path))
    with open_run_dir(run_dir, config.overwrite, resume is not None):
        _fit_in(run_dir, config, data, image_size, resume, verbose)
    return Run(run_dir.path)


def backbone_from_weights(config):
    """Shipped weights (``weights="pbc"``) bring their architecture when no backbone was
    named: the default backbone could not take them."""
    from leukonet.models.weights import backbone_of

    backbone = backbone_of(config.weights)
    return config.replace(backbone=backbone) if backbone else config


@contextlib.contextmanager
def open_run_dir(run_dir, overwrite, resume):
    """Create (or reopen) and lock ``run_dir`` and log to its train.log for the block; a
    folder that cannot be written is a one-line error. Afterwards the log handler is
    removed and the lock released (also used by ``--ensemble`` and ``--folds``)."""
    try:
        run_dir.prepare(overwrite=overwrite, resume=resume)
        handler = _log_to(run_dir.log)
    except PermissionError as e:
        raise LeukonetError(f"{run_dir.path}: cannot write there ({e.strerror}); choose a writable "
                            "--run-dir") from None
    try:
        yield
    finally:
        logging.getLogger("leukonet").removeHandler(handler)
        handler.close()
        run_dir.unlock()


def _fit_in(run_dir, config, data, image_size, resume, verbose):
    """fit's work inside the opened run directory."""
    try:
        if resume is None:
            io.write_json(run_dir.config, config.to_dict())
            io.write_json(run_dir.path / "classes.json", {"classes": data["classes"]})
            io.write_csv(run_dir.train_manifest, data["train"].frame)
            io.write_csv(run_dir.val_manifest, data["val"].frame)
        log.info("%s run %s: %d training / %d validation images, %d classes, %s at %dx%d",
                 "resuming" if resume else "starting", run_dir.path, len(data["train"]),
                 len(data["val"]), len(data["classes"]), config.backbone, *image_size)
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
            _train(config, run_dir, data, image_size, verbose)
    except KeyboardInterrupt:
        log.warning("interrupted; the last finished epoch is saved. Continue with: "
                    "leukonet fit --resume %s", run_dir.path)
        raise
    except LeukonetError as e:
        _log_file_only(f"error: {e}")  # the console gets it once, from the command
        raise


def _check_options(config):
    if config.lr_schedule not in ("plateau", "cosine"):
        raise LeukonetError(f"--lr-schedule {config.lr_schedule!r}: choose plateau or cosine")
    from leukonet.data.crop import check_fraction

    if check_fraction(config.nucleus_crop) and parse_size(config.image_size) == "native":
        raise LeukonetError("--image-size native with --nucleus-crop: the crop changes the size; "
                            "pass --image-size HxW (e.g. 96x96)")
    if config.mixup < 0:
        raise LeukonetError(f"--mixup {config.mixup}: expected a Beta alpha > 0 (e.g. 0.2), or 0 "
                            "for none")
    if config.mixup and config.cache_features:
        raise LeukonetError("--mixup with --cache-features: the cache holds features of unmixed "
                            "images; drop one of them")
    if not 0 <= config.val_fraction < 1:
        raise LeukonetError(f"--val-fraction {config.val_fraction}: expected 0 <= fraction < 1 (0: "
                            "no validation)")
    if config.val_fraction == 0 and not config.val_manifest and config.cache_features:
        raise LeukonetError("--val-fraction 0 with --cache-features: the head-only path needs "
                            "validation rows; give --val-manifest or a fraction > 0")
    if config.refit and config.folds < 2:
        raise LeukonetError("--refit needs --folds K (K >= 2): it trains the final model after "
                            "cross-validation")
    if config.precise_bn < 0:
        raise LeukonetError(f"--precise-bn {config.precise_bn}: expected a number of batches >= 0")
    if config.monitor not in ("val_loss", "val_accuracy"):
        raise LeukonetError(f"--monitor {config.monitor!r}: choose val_loss or val_accuracy")
    if not 0 <= config.ema < 1:
        raise LeukonetError(f"--ema {config.ema}: expected a momentum 0 <= m < 1 (e.g. 0.99; 0: "
                            "no moving average)")
    if config.ensemble < 1:
        raise LeukonetError(f"--ensemble {config.ensemble}: expected a number of members >= 1")
    if config.folds < 1:
        raise LeukonetError(f"--folds {config.folds}: expected a number of folds >= 2 (1: no "
                            "cross-validation)")
    if config.multitask and (config.ensemble > 1 or config.folds > 1):
        flag = "--folds" if config.folds > 1 else "--ensemble"
        raise LeukonetError(f"{flag} with --multitask: the averaged model has the cell-type output "
                            "only; train the multi-task run alone, or drop --multitask")
    # a combined --folds run records ensemble=K (its model averages K members), hence "in"
    if config.folds > 1 and config.ensemble not in (1, config.folds):
        raise LeukonetError(f"--folds {config.folds} with --ensemble {config.ensemble}: the fold "
                            "models are the ensemble; drop --ensemble")


def _verify_data(run_dir, data):
    """On resume: the images must be the ones the run started with (same sha1)."""
    from concurrent.futures import ThreadPoolExecutor

    from leukonet.data import scan
    from leukonet.data.images import file_sha1

    frame = pd.concat([data["train"].frame, data["val"].frame])
    if "sha1" not in frame:
        return

    def same(item):
        rel, sha1 = item
        try:
            return file_sha1(scan.resolve(data["root"], rel)) == sha1
        except OSError:
            return False

    with ThreadPoolExecutor(4) as pool:
        ok = list(pool.map(same, zip(frame["path"], frame["sha1"])))
    changed = [p for p, good in zip(frame["path"], ok) if not good]
    if changed:
        raise LeukonetError(f"{len(changed)} image(s) changed or missing since {run_dir.path} started "
                            f"(first: {changed[0]}); restore them, or start a new run")


def _trim_history(run_dir, from_epoch):
    """Drop history rows of epochs that will run again (a kill after the CSV row was
    written but before the backup was): the resumed history has no repeated epoch."""
    history = read_history(run_dir.history)
    if len(history) and (history["epoch"] > from_epoch).any():  # epochs count from 1
        io.write_csv(run_dir.history, history[history["epoch"] <= from_epoch])


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (notebooks and test runners swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def _log_file_only(message):
    """A line for train.log only (the run's file handlers), not the console."""
    for handler in logging.getLogger("leukonet").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.emit(logging.LogRecord("leukonet", logging.ERROR, "", 0, message, None, None))


def _console():
    """leukonet's log lines on the console (once)."""
    logger = logging.getLogger("leukonet")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and getattr(h, "_leukonet", False)
               for h in logger.handlers):
        console = _CurrentStdout()
        console.setFormatter(logging.Formatter("%(message)s"))
        console._leukonet = True
        logger.addHandler(console)
    return logger


def _log_to(path):
    logger = _console()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return handler


# ---- data ---------------------------------------------------------------------------
def _resolve_data(config):
    from leukonet.data.manifest import Manifest

    if not config.manifest:
        raise LeukonetError("no --manifest given; build one with `leukonet manifest build`, or "
                            "try `leukonet fit --demo`")
    root = _data_root(config)
    m = Manifest.read_csv(config.manifest, root=root)
    split = m.frame["split"].astype(str).str.lower() if m.has_splits else None
    if split is not None and split.eq("test").all():
        raise LeukonetError(f"--manifest {config.manifest}: all {len(m)} rows are test rows "
                            "(split column); train on the train manifest (e.g. train.csv) and "
                            "keep this one for `leukonet evaluate`")
    if config.val_manifest:
        val = Manifest.read_csv(config.val_manifest, root=root)
        train = m._take(np.flatnonzero(~split.isin(["val", "test"]))) if split is not None else m
    elif config.val_fraction == 0:
        # no validation: every row but the test ones trains; the last epoch is the model
        train = m._take(np.flatnonzero(~split.eq("test"))) if split is not None else m
        val = m._take([])
        log.info("no validation (val fraction 0): all %d non-test rows of %s train; model.keras "
                 "is the last epoch's", len(train), config.manifest)
    elif split is not None and split.eq("val").any():
        train = m._take(np.flatnonzero(split.eq("train")))
        val = m._take(np.flatnonzero(split.eq("val")))
    else:
        if not m.has_groups:
            raise LeukonetError(f"{config.manifest}: no `group` column to split by; pass "
                                "--val-manifest or build the manifest with `leukonet manifest build`")
        parts = m.split(val=config.val_fraction, seed=config.seed)
        train, val = parts["train"], parts["val"]
        log.info("validation: a group-aware %.0f%% split of %s (seed %d)", 100 * config.val_fraction,
                 config.manifest, config.seed)
    classes = m.classes
    if val.classes != classes and set(val.frame["label"]) - set(classes):
        extra = sorted(set(val.frame["label"]) - set(classes))
        raise LeukonetError(f"validation manifest has classes the training manifest lacks "
                            f"({', '.join(extra)}); use manifests with the same classes")
    val = _reindex(val, classes)
    missing = sorted(set(classes) - set(train.frame["label"]))
    if missing:
        raise LeukonetError(f"no training images for class(es) {', '.join(missing)}; add images or "
                            "drop the class from the manifest")
    if config.batch_size > len(train):
        raise LeukonetError(f"--batch-size {config.batch_size} is larger than the {len(train)} "
                            "training images; lower it")
    return dict(train=train, val=val, classes=classes, root=root)


def _absolute_paths(config):
    """The data paths of a new run as absolute ones: config.json then reads the same from
    any folder (``--resume``, ``evaluate`` and the members of ``--folds`` read it)."""
    changes = {k: str(Path(v).resolve()) for k in ("manifest", "val_manifest", "data_root")
               if (v := getattr(config, k))}
    return config.replace(**changes)


def _resume_data(run_dir, config):
    """On ``--resume``: the run's own copies of its manifests (train_manifest.csv,
    val_manifest.csv, classes.json), whatever folder the command runs in. Ensembles and
    cross-validation runs hold their members' copies inside the members."""
    from leukonet.data.manifest import Manifest

    if not run_dir.train_manifest.is_file() or config.folds > 1 or config.ensemble > 1:
        return _resolve_data(config)
    root = _data_root(config)
    train = Manifest.read_csv(run_dir.train_manifest, root=root)
    val = Manifest.read_csv(run_dir.val_manifest, root=root)
    return dict(train=train, val=_reindex(val, train.classes), classes=train.classes, root=root)


def _reindex(part, classes):
    from leukonet.data.manifest import Manifest

    return Manifest(part.frame.copy(), root=part.root, classes=classes)


def _data_root(config):
    if config.data_root:
        root = Path(config.data_root)
        if not root.is_dir():
            raise LeukonetError(f"--data-root {root}: no such folder")
        return root
    raise LeukonetError("no --data-root given: the folder the manifest paths are relative to")


def _warn_overlap(train, val):
    t, v = train.frame, val.frame
    shared_hash = len(set(t["sha1"]) & set(v["sha1"])) if "sha1" in t and "sha1" in v else 0
    shared_group = 0
    if train.has_groups and val.has_groups:
        shared_group = len(set(t["group"]) & set(v["group"]))
    if shared_hash or shared_group:
        log.warning("warning: training and validation share %d image hashes and %d families: "
                    "validation accuracy will be optimistic; split with `leukonet manifest split`",
                    shared_hash, shared_group)


def _resolve_size(config, data):
    from leukonet.models.registry import get_backbone

    spec = get_backbone(config.backbone)
    size = parse_size(config.image_size)
    if size == "default":
        return tuple(spec.default_size)
    if size == "native":
        frame = pd.concat([data["train"].frame, data["val"].frame])
        sizes = frame.groupby(["height", "width"]).size()
        if len(sizes) != 1:
            common = sizes.idxmax()
            raise LeukonetError(f"--image-size native: the images have {len(sizes)} sizes (most "
                                f"common {common[0]}x{common[1]}); pass --image-size HxW")
        return tuple(int(v) for v in sizes.index[0])
    return tuple(size)


# ---- training -----------------------------------------------------------------------
def _aux(config, classes, frame):
    if not config.multitask:
        return None, None
    mapping = config.multitask.get("map", {})
    name = config.multitask.get("name", "aux")
    missing = [c for c in classes if c not in mapping]
    if missing:
        raise LeukonetError(f"multitask map has no entry for class(es) {', '.join(missing)}")
    aux_classes = sorted(set(mapping[c] for c in classes))
    index = {a: i for i, a in enumerate(aux_classes)}
    aux_index = frame["label"].map(lambda c: index[mapping[c]]).to_numpy()
    return aux_classes, (name, aux_index, len(aux_classes))


def _loaders(config, data, image_size):
    from leukonet.data.augment import policy_from_config
    from leukonet.data.loader import ManifestLoader

    aux_classes, train_aux = _aux(config, data["classes"], data["train"].frame)
    _, val_aux = _aux(config, data["classes"], data["val"].frame)
    common = dict(root=data["root"], image_size=image_size, batch_size=config.batch_size,
                  num_classes=len(data["classes"]), cache_dir=config.cache_dir,
                  skip_bad_images=config.skip_bad_images, workers=config.workers,
                  nucleus_crop=config.nucleus_crop, float_pixels=config.strategy == "multiworker")
    train = ManifestLoader(data["train"].frame, shuffle=True, seed=config.seed,
                           policy=policy_from_config(config), mixup=config.mixup, aux=train_aux,
                           **common)
    val = ManifestLoader(data["val"].frame, aux=val_aux, **common) if len(data["val"]) else None
    return train, val, aux_classes


def _precise_bn_loader(config, data, train):
    """Clean training batches (fixed order) for --precise-bn, or None."""
    if config.precise_bn <= 0:
        return None
    if config.strategy != "default":
        log.warning("--precise-bn is ignored with --strategy %s (it runs eagerly on one device)",
                    config.strategy)
        return None
    return _clean_train_loader(config, data, train, workers=1, shuffle=True, seed=config.seed + 1,
                               skip_bad_images=config.skip_bad_images)


def _clean_train_loader(config, data, train, workers, shuffle=False, seed=None,
                        skip_bad_images=False):
    """The training rows without augmentation: for precise BN (shuffled), and for feature
    caching (in manifest order, every row: the cache is indexed by row)."""
    from leukonet.data.loader import ManifestLoader

    return ManifestLoader(data["train"].frame, data["root"], train.image_size, train.batch_size,
                          num_classes=train.num_classes, shuffle=shuffle,
                          seed=config.seed if seed is None else seed, cache_dir=config.cache_dir,
                          skip_bad_images=skip_bad_images, workers=workers,
                          nucleus_crop=config.nucleus_crop)


def _compile(model, config, lr, aux_classes, decay_steps=None, steps_per_execution=1):
    import keras

    if config.lr_schedule == "cosine" and decay_steps:
        lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, int(decay_steps)))

    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    if aux_classes:
        name = config.multitask["name"]
        losses = {"cell_type": loss, name: keras.losses.CategoricalCrossentropy()}
        weights = {"cell_type": 1.0, name: float(config.multitask.get("loss_weight", 0.5))}
        metrics = {"cell_type": ["accuracy"], name: ["accuracy"]}
    else:
        losses, weights, metrics = loss, None, ["accuracy"]
    # use_ema: Keras keeps the average inside the optimizer (saved with it, so BackupAndRestore
    # resumes it); the EMAWeights callback swaps it in for validation and checkpoints.
    optimizer = keras.optimizers.Adam(lr, use_ema=config.ema > 0, ema_momentum=config.ema or 0.99)
    model.compile(optimizer=optimizer, loss=losses, loss_weights=weights,
                  metrics=metrics, jit_compile="auto" if config.jit is None else bool(config.jit),
                  steps_per_execution=steps_per_execution)


def set_backbone_trainable(model, fraction_or_count=1.0):
    """Unfreeze the top layers of the backbone; BatchNorm layers stay frozen (inference
    mode), which keeps their ImageNet statistics while the rest fine-tunes."""
    import keras

    from leukonet.models.build import BACKBONE_LAYER

    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = True
    with_weights = [l for l in backbone.layers if l.weights]
    n = len(with_weights)
    k = round(fraction_or_count * n) if fraction_or_count <= 1 else int(fraction_or_count)
    for i, layer in enumerate(with_weights):
        layer.trainable = i >= n - k and not isinstance(layer, keras.layers.BatchNormalization)


def _callbacks(config, run_dir, stage, monitor, export=None, precise_bn=None, validated=True,
               resume_epoch=0, clock=None):
    """``validated=False`` (no validation rows): ``monitor`` is a training metric for the
    learning-rate and stopping callbacks, model.keras is saved every epoch (the last one is
    the model), and precise BN re-estimates at the end of each epoch. ``resume_epoch``: the
    epoch this stage starts at (BackupAndRestore's, after a kill); ``clock()``: the training
    seconds so far, recorded at each epoch end."""
    import keras

    from leukonet.train.callbacks import (AtomicCheckpoint, EMAWeights, EpochCSVLogger, EpochLog,
                                          EpochSeeds, PreciseBatchNorm, ResumableCounters,
                                          monitor_mode)

    # CSVLogger before BackupAndRestore: a kill between the two repeats an epoch (and
    # _trim_history drops its row) instead of leaving a gap. ReduceLROnPlateau, EarlyStopping
    # and the record of their counters before BackupAndRestore too: the backup then holds
    # the learning rate they set at this epoch's end, and a kill after the record and
    # before the backup finds the counters of the epoch the backup resumes at.
    # BackupAndRestore before EMAWeights: the backup holds the training weights, not the
    # average swapped in at the epoch end. EMAWeights before PreciseBatchNorm: the
    # statistics are re-estimated for the weights that are validated. Both before
    # AtomicCheckpoint, so the checkpoint holds those weights and their statistics.
    mode = monitor_mode(monitor)
    watched = []
    if config.lr_schedule != "cosine":  # a cosine schedule owns the learning rate
        watched.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=config.lr_factor, patience=config.lr_patience,
            verbose=0))
    watched.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                 patience=config.stop_patience))
    callbacks = [
        EpochCSVLogger(str(run_dir.history), append=True),
        *watched,
        ResumableCounters(run_dir.state, watched, resume_epoch, stage, clock),
        keras.callbacks.BackupAndRestore(str(run_dir.backup / f"stage{stage}"), double_checkpoint=True),
        EpochSeeds(config.seed),
    ]
    if config.ema:
        callbacks.append(EMAWeights())
    if precise_bn is not None:
        callbacks.append(PreciseBatchNorm(precise_bn, config.precise_bn, at_epoch_end=not validated))
    callbacks.append(AtomicCheckpoint(run_dir.model, run_dir.last, run_dir.state,
                                      monitor=monitor if validated else None, export=export))
    callbacks.append(EpochLog())
    # TensorBoard logs need the tensorboard package (not a TensorFlow dependency any more).
    if importlib.util.find_spec("tensorboard") is not None and keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir.path / "logs"), write_graph=False,
                                                     profile_batch=0))
    return callbacks


def _train(config, run_dir, data, image_size, verbose):
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
                             verbose)
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
        with loader_errors(train, val, bn_loader):
            model.fit(train, validation_data=val, epochs=s["epochs"], initial_epoch=initial_epoch,
                      shuffle=False,
                      callbacks=_callbacks(config, run_dir, s["stage"], monitor,
                                           precise_bn=bn_loader, validated=val is not None,
                                           resume_epoch=restored, clock=clock) + [guard],
                      class_weight=class_weight, verbose=verbose)
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


def _train_cached(config, run_dir, data, model, train, val, aux_classes, class_weight, verbose):
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
    val_f = F.FeatureLoader(val_paths, val._targets, len(val.paths), config.batch_size)
    # a resumed run reads the view and order that the epoch it resumes at would have read
    train_f.epoch = _restored_epoch(run_dir, 1, 0)
    _trim_history(run_dir, train_f.epoch)
    guard = NanGuard()
    head.fit(F.keras_input(train_f), validation_data=F.keras_input(val_f), epochs=config.epochs,
             shuffle=False,  # the feature loader shuffles from (seed, epoch): see _train
             verbose=verbose,
             callbacks=_callbacks(config, run_dir, 1,
                                  _monitor(config, validated=True, multitask=bool(aux_classes)),
                                  export=lambda h: F.copy_head(h, model),
                                  resume_epoch=train_f.epoch, clock=clock) + [guard],
             class_weight=class_weight)
    state = run_dir.read_state()
    if guard.fired:
        raise LeukonetError(f"loss became NaN; training stopped (best checkpoint: epoch "
                            f"{state.get('best_epoch')}); lower --lr")
    _final_metrics(run_dir, val, state, clock(), data,
                   _monitor(config, validated=True, multitask=bool(aux_classes)))


def _training_clock(state):
    """``() -> seconds``: this process's training time so far plus that of the sessions
    before a ``--resume`` (recorded in state.json at each epoch end)."""
    before, start = float(state.get("train_seconds", 0.0)), time.perf_counter()
    return lambda: before + time.perf_counter() - start


def _monitor(config, validated, multitask):
    """The name Keras logs ``config.monitor`` under: a multi-task model's accuracy is its
    cell-type output's; without validation, the training score of the same name."""
    name = config.monitor
    if multitask and name.endswith("accuracy"):
        name = name.replace("accuracy", "cell_type_accuracy")
    return name if validated else name.removeprefix("val_")


def _restored_epoch(run_dir, stage, default):
    """The epoch BackupAndRestore will resume this stage from."""
    meta = run_dir.backup / f"stage{stage}" / "training_metadata.json"
    if meta.is_file():
        import json

        return int(json.loads(meta.read_text())["epoch"])
    return default


def _copy_weights(path, model):
    from leukonet.train.run import load_model

    model.set_weights(load_model(path).get_weights())


def _class_weight(config, data, aux_classes):
    if not config.class_weight:
        return None
    if config.class_weight != "balanced":
        raise LeukonetError(f"--class-weight {config.class_weight!r}: only 'balanced' is supported")
    if aux_classes:
        raise LeukonetError("--class-weight is not supported with a multi-task model (Keras "
                            "applies class weights to single-output models only)")
    from sklearn.utils.class_weight import compute_class_weight

    y = data["train"].frame["label_index"].to_numpy()
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {int(c): float(w) for c, w in zip(present, weights)}


def _summary(model, config, data, image_size):
    lines = []
    model.summary(print_fn=lambda s, **_: lines.append(s), expand_nested=False)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    lines.append(f"backbone {config.backbone}, head {config.head}, input {image_size[0]}x{image_size[1]}")
    lines.append(f"parameters: {model.count_params():,} ({trainable:,} trainable at start)")
    lines.append(f"classes: {', '.join(data['classes'])}")
    return "\n".join(lines) + "\n"


def _final_metrics(run_dir, val, state, seconds, data, monitor):
    from leukonet.data.loader import loader_errors
    from leukonet.train.run import load_model

    history = read_history(run_dir.history)
    if val is not None:
        best = load_model(run_dir.model)
        with loader_errors(val):
            results = best.evaluate(val, verbose=0, return_dict=True)
        metrics = {("val_" + k if not k.startswith("val_") else k): float(v) for k, v in results.items()}
        if "val_cell_type_accuracy" in metrics:
            metrics["val_accuracy"] = metrics["val_cell_type_accuracy"]
        metrics["best_by"] = monitor
    else:  # no validation: the last epoch's training scores (augmented batches), said as such
        last = history.iloc[-1] if len(history) else {}
        metrics = {f"train_{k}": float(last[k]) for k in ("loss", "accuracy") if k in last}
        metrics["validation"] = "none (--val-fraction 0): model.keras is the last epoch"
    metrics.update(best_epoch=state.get("best_epoch"), epochs_run=state.get("last_epoch"),
                   train_images=len(data["train"]), val_images=len(data["val"]),
                   train_seconds=round(seconds, 1))
    io.write_json(run_dir.metrics, metrics)
    from leukonet.evaluate import plots

    if len(history):
        fig = plots.curves(history)
        plots.save(fig, run_dir.path / "curves.png")
        plots.close(fig)
    if val is None:
        log.info("last epoch (%s) kept, no validation: training accuracy %.4f -> %s",
                 state.get("last_epoch"), metrics.get("train_accuracy", float("nan")), run_dir.model)
        return
    log.info("best model (epoch %s, by %s): validation accuracy %.4f, loss %.4f -> %s",
             state.get("best_epoch"), monitor, metrics.get("val_accuracy", float("nan")),
             metrics.get("val_loss", float("nan")), run_dir.model)
