"""How a model is compiled and which callbacks a training stage runs: ``_compile``
(optimizer, losses, metrics), ``set_backbone_trainable`` (the unfreezing of fine-tuning),
``_monitor`` (the name the monitored score is logged under) and ``_callbacks`` (the list, in
the order that resuming and weight averaging need).

May import: keras, leukonet.models.build and leukonet.train.callbacks (Keras inside the
functions, so importing this module stays light).
"""
import importlib.util


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


def _monitor(config, validated, multitask):
    """The name Keras logs ``config.monitor`` under: a multi-task model's accuracy is its
    cell-type output's; without validation, the training score of the same name."""
    name = config.monitor
    if multitask and name.endswith("accuracy"):
        name = name.replace("accuracy", "cell_type_accuracy")
    return name if validated else name.removeprefix("val_")


def _callbacks(config, run_dir, stage, monitor, export=None, precise_bn=None, validated=True,
               resume_epoch=0, clock=None):
    """``validated=False`` (no validation rows): ``monitor`` is a training metric for the
    learning-rate and stopping callbacks, model.keras is saved every epoch (the last one is
    the model), and precise BN re-estimates at the end of each epoch. ``resume_epoch``: the
    epoch this stage starts at (BackupAndRestore's, after a kill); ``clock()``: the training
    seconds so far, recorded at each epoch end."""
    import keras

    from leukonet import console
    from leukonet.train.callbacks import (AtomicCheckpoint, BatchProgress, EMAWeights,
                                          EpochCSVLogger, EpochLog, EpochSeeds, PreciseBatchNorm,
                                          ResumableCounters, monitor_mode)

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
    callbacks.append(EpochLog(run_dir.state))
    if console.verbosity() == console.NORMAL:
        callbacks.append(BatchProgress())
    # TensorBoard logs need the tensorboard package (not a TensorFlow dependency any more).
    if importlib.util.find_spec("tensorboard") is not None and keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir.path / "logs"), write_graph=False,
                                                     profile_batch=0))
    return callbacks


def keras_verbose(verbose):
    """Keras' own progress output: only with -v (console.VERBOSE); otherwise leukonet's
    EpochLog line (and BatchProgress bar) stand for it."""
    from leukonet import console

    return verbose if console.verbosity() >= console.VERBOSE else 0
