"""What a finished run writes: summary.txt (``_summary``); metrics.json, curves.png and the
closing log line (``_final_metrics``).

May import: numpy, leukonet.io, leukonet.data.loader, leukonet.evaluate.plots and
leukonet.train.run.
"""
import logging

import numpy as np

from leukonet import io
from leukonet.train.run import read_history

log = logging.getLogger("leukonet")


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
