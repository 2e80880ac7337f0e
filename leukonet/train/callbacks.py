"""Callbacks Keras does not ship (atomic best/last checkpoints, a log line per epoch, precise
BatchNorm statistics) and one it ships, configured for leukonet's order (weight averaging).

Keras' ModelCheckpoint writes straight onto the target file, so a kill mid-write can
leave a broken model.keras; these write to a temporary file and rename it.

May import: keras, numpy, leukonet.io, leukonet.compat, leukonet.console and leukonet.errors;
nothing from leukonet.train.
"""
import json
import logging
import math
import time

import keras
import numpy as np

from leukonet import io
from leukonet.compat import no_array_copy_warning
from leukonet.errors import LeukonetError

log = logging.getLogger("leukonet")


def monitor_mode(monitor):
    """"max" for an accuracy (``val_accuracy``, ``val_cell_type_accuracy``), else "min"."""
    return "max" if monitor.endswith("accuracy") else "min"


class AtomicCheckpoint(keras.callbacks.Callback):
    """``last.keras`` after every epoch, ``model.keras`` when ``monitor`` improves: falls for
    a loss, rises for an accuracy; a tie keeps the earlier epoch (``monitor=None``, a run
    without validation: every epoch, so the last one is kept).

    The best value so far lives in ``state_path`` so a resumed run keeps comparing
    against it.
    """

    def __init__(self, best_path, last_path, state_path, monitor="val_loss", export=None):
        super().__init__()
        self.best_path, self.last_path, self.state_path = best_path, last_path, state_path
        self.monitor = monitor
        self._sign = 1 if monitor is None or monitor_mode(monitor) == "min" else -1
        self.export = export  # model -> the model to save (the head-only path saves the full one)

    def _state(self):
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        model = self.export(self.model) if self.export else self.model
        self._save(model, self.last_path)
        state = self._state()
        best = state.get("best_value")
        if self.monitor is None:
            self._save(model, self.best_path)
            state.update(best_epoch=epoch + 1)
        elif (value is not None and math.isfinite(value)
              and (best is None or self._sign * (value - best) < 0)):
            self._save(model, self.best_path)
            state.update(best_value=float(value), best_epoch=epoch + 1)
            # EpochLog's line says "best so far"; the value is for -v and train.log
            log.debug("epoch %d: %s improved to %.4f, saved %s", epoch + 1, self.monitor, value,
                      self.best_path.name)
        state["last_epoch"] = epoch + 1
        io.write_json(self.state_path, state)


    def _save(self, model, path):
        try:
            with io.atomic_path(path) as tmp:
                with no_array_copy_warning():
                    model.save(tmp)
        except OSError as e:
            # The temporary file is gone and the previous checkpoint untouched.
            raise LeukonetError(f"{path}: cannot write the checkpoint ({e.strerror or e}); the "
                                f"previous one is kept; free space, then leukonet fit --resume "
                                f"{path.parent}") from None


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """Keras' CSVLogger with epochs numbered from 1, as the log, metrics.json's
    ``best_epoch`` and state.json count them (Keras numbers them from 0)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


class EpochLog(keras.callbacks.Callback):
    """The one line per epoch, on the console and in train.log: the epoch of how many, its
    metrics and time, and "best" when the checkpoint took it (read from ``state_path``,
    which AtomicCheckpoint writes before this runs). Keras' own line is off unless -v."""

    def __init__(self, state_path=None):
        super().__init__()
        self.state_path, self._start = state_path, None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        items = ", ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
        seconds = f" ({time.perf_counter() - self._start:.0f} s)" if self._start else ""
        state = (json.loads(self.state_path.read_text())
                 if self.state_path is not None and self.state_path.is_file() else {})
        best = ", best so far: saved model.keras" if (
            state.get("best_epoch") == epoch + 1 and "best_value" in state) else ""
        log.info("epoch %d/%s: %s%s%s", epoch + 1, self.params.get("epochs", "?"), items,
                 seconds, best)


class BatchProgress(keras.callbacks.Callback):
    """A progress bar inside each epoch (rate and time left) on a terminal, cleared at the
    epoch's end where EpochLog's line takes its place; off with -q, -v and off a terminal."""

    bar = None

    def on_epoch_begin(self, epoch, logs=None):
        from leukonet.console import progress

        self.bar = progress(self.params.get("steps"), f"epoch {epoch + 1}/{self.params.get('epochs')}",
                            "batch", leave=False)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.update()

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' swap of the optimizer's moving average of the weights (``use_ema=True``) into
    the model for validation, and at each epoch end for the callbacks after it (the
    checkpoints), swapped back when the next epoch begins.

    ``fit`` lists it after BackupAndRestore (whose backup must hold the training weights to
    resume from) and before PreciseBatchNorm (which must measure the averaged weights).
    """

    def __init__(self):
        super().__init__(swap_on_epoch=True)


class NanGuard(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers it fired, so fit can say so after training."""

    fired = False

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.fired = True
        super().on_batch_end(batch, logs)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before each validation, re-estimate BatchNorm moving statistics as the plain mean
    over ``batches`` clean (unaugmented) training batches ("precise BN", Wu & Johnson 2021).

    Exponential moving averages lag weights that still change fast, so a short CPU run
    validates with stale statistics: on blood-cells the same weights scored 73 % with the
    running averages and 84-86 % with re-estimated ones (``benchmarks/results/accuracy_cpu.md``).
    Only trainable BatchNorm layers are touched: frozen ones keep their (ImageNet) statistics.
    The new statistics stay in the model, so checkpoints carry them. ``at_epoch_end``: a run
    without validation re-estimates at the end of each epoch instead (this callback comes
    before the checkpoint in the list, so the checkpoint saved at that epoch end carries them).
    """

    def __init__(self, loader, batches, at_epoch_end=False):
        super().__init__()
        self.loader, self.batches, self.at_epoch_end = loader, int(batches), at_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        if self.at_epoch_end:
            self.on_test_begin()

    def on_test_begin(self, logs=None):
        bns = [l for l in self.model._flatten_layers(include_self=False, recursive=True)
               if isinstance(l, keras.layers.BatchNormalization) and l.trainable]
        if not bns:
            return
        momenta = [l.momentum for l in bns]
        for l in bns:
            # numpy, not ops.zeros_like(variable): JAX cannot convert a variable mid-fit
            l.moving_mean.assign(np.zeros(l.moving_mean.shape, l.moving_mean.dtype))
            l.moving_variance.assign(np.ones(l.moving_variance.shape, l.moving_variance.dtype))
        try:
            for i in range(min(self.batches, len(self.loader))):
                for l in bns:
                    l.momentum = i / (i + 1)  # moving = running mean of the batch statistics
                x, _ = self.loader[i]
                self.model(x, training=True)
        finally:
            for l, m in zip(bns, momenta):
                l.momentum = m


class EpochSeeds(keras.callbacks.Callback):
    """Each epoch's random layers (Dropout) draw from ``(seed, epoch)`` alone.

    A Keras SeedGenerator keeps its state in a variable that ``save_weights`` (and so
    BackupAndRestore) leaves out: a resumed run dropped other units than an unbroken one
    from its first epoch on. Setting every generator's state from the seed and the epoch
    number when the epoch begins makes both draw the same, as the loader's shuffle and
    augmentation already do.
    """

    def __init__(self, seed):
        super().__init__()
        self.seed = int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        for k, v in enumerate(states):
            value = np.random.SeedSequence([self.seed, epoch, k]).generate_state(2)
            v.assign(value.astype(v.dtype))


class ResumableCounters(keras.callbacks.Callback):
    """Keeps the counters of ReduceLROnPlateau and EarlyStopping (epochs without
    improvement, best value, cooldown) and the training time (``clock``) across ``--resume``.

    Keras resets them when a fit begins, so a resumed run lowered its learning rate and
    stopped at other epochs than an unbroken one. ``fit`` lists this callback after those
    two and before BackupAndRestore: at an epoch end it records their counters under the
    number of the next epoch, before the backup is written, and when a resumed fit begins
    it puts back the counters recorded for the epoch the backup resumes at.
    """

    FIELDS = ("wait", "best", "cooldown_counter", "best_epoch")

    def __init__(self, state_path, watched, resume_epoch, stage, clock=None):
        super().__init__()
        self.state_path, self.watched = state_path, watched
        self.resume_epoch, self.key = resume_epoch, f"stage{stage}"
        self.clock = clock  # () -> training seconds so far, earlier sessions included

    def _state(self):
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def on_train_begin(self, logs=None):
        state = self._state()
        saved = state.get("counters", {}).get(self.key, {}).get(str(self.resume_epoch))
        if saved is None:
            return
        for callback, values in zip(self.watched, saved):
            for name, value in values.items():
                setattr(callback, name, float(value) if isinstance(value, str) else value)

    def on_epoch_end(self, epoch, logs=None):
        state = self._state()
        counters = state.setdefault("counters", {}).setdefault(self.key, {})
        counters[str(epoch + 1)] = [
            {f: _plain(getattr(c, f)) for f in self.FIELDS if hasattr(c, f)} for c in self.watched]
        if self.clock is not None:
            state["train_seconds"] = round(self.clock(), 1)
        io.write_json(self.state_path, state)


def _plain(value):
    """A counter as JSON holds it (numpy scalars and infinities included)."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf" / "-inf"; float("inf") reads it back
    return value
