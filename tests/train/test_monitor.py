"""--monitor: the validation score that picks model.keras and drives the plateau and the stop
(val_loss falls, val_accuracy rises)."""
import json

import keras
import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.config import FitConfig
from leukonet.errors import LeukonetError
from leukonet.train import fit as fit_module
from leukonet.train.callbacks import AtomicCheckpoint
from leukonet.train.run import RunDir, load_model
from tests.conftest import demo_fit_config


def _tiny():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    return model


def _epochs(checkpoint, model, scores, first=0):
    """Epoch e (from 1) sets the weight to e and logs ``scores[e - 1]``."""
    checkpoint.set_model(model)
    for e in range(first, len(scores)):
        model.layers[0].kernel.assign(np.full((1, 1), e + 1.0, "float32"))
        checkpoint.on_epoch_end(e, {checkpoint.monitor: scores[e]})


def _saved_epoch(path):
    return float(load_model(path).layers[0].kernel.numpy()[0, 0])


@pytest.mark.parametrize("monitor, scores, best", [
    ("val_accuracy", [0.5, 0.7, 0.6, 0.7, 0.65], 2),  # the highest; a tie keeps the earlier
    ("val_loss", [0.9, 0.7, 0.8, 0.7, 0.75], 2),      # the lowest
    ("val_cell_type_accuracy", [0.4, 0.3, float("nan"), 0.45, 0.2], 4),  # NaN never wins
])
def test_the_checkpoint_keeps_the_best_epoch_in_the_monitor_s_direction(tmp_path, monitor,
                                                                         scores, best):
    checkpoint = AtomicCheckpoint(tmp_path / "model.keras", tmp_path / "last.keras",
                                  tmp_path / "state.json", monitor=monitor)
    _epochs(checkpoint, _tiny(), scores)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["best_epoch"] == best and _saved_epoch(tmp_path / "model.keras") == best
    assert state["best_value"] == pytest.approx(scores[best - 1])
    assert _saved_epoch(tmp_path / "last.keras") == len(scores)


def test_a_resumed_checkpoint_compares_with_the_best_accuracy_so_far(tmp_path):
    paths = tmp_path / "model.keras", tmp_path / "last.keras", tmp_path / "state.json"
    scores = [0.5, 0.8, 0.6, 0.7, 0.9]
    _epochs(AtomicCheckpoint(*paths, monitor="val_accuracy"), _tiny(), scores[:3])
    # a new process: 0.7 at epoch 4 is below epoch 2's 0.8, 0.9 at epoch 5 above it
    resumed = AtomicCheckpoint(*paths, monitor="val_accuracy")
    _epochs(resumed, _tiny(), scores, first=3)
    assert json.loads(paths[2].read_text())["best_epoch"] == 5
    resumed_again = AtomicCheckpoint(*paths, monitor="val_accuracy")
    _epochs(resumed_again, _tiny(), [0.0] * 5 + [0.85], first=5)
    assert _saved_epoch(paths[0]) == 5


@pytest.mark.parametrize("validated, multitask, name", [
    (True, False, "val_accuracy"), (False, False, "accuracy"),
    (True, True, "val_cell_type_accuracy"), (False, True, "cell_type_accuracy"),
])
def test_every_callback_follows_the_monitor_with_its_direction(tmp_path, validated, multitask,
                                                               name):
    config = FitConfig(monitor="val_accuracy", lr_schedule="plateau")
    monitor = fit_module._monitor(config, validated=validated, multitask=multitask)
    assert monitor == name
    assert fit_module._monitor(FitConfig(), validated, multitask) == ("val_loss" if validated
                                                                      else "loss")
    callbacks = {type(c).__name__: c for c in
                 fit_module._callbacks(config, RunDir(tmp_path / "run"), 1, monitor,
                                       validated=validated)}
    plateau, stop = callbacks["ReduceLROnPlateau"], callbacks["EarlyStopping"]
    assert plateau.monitor == stop.monitor == name
    assert plateau.mode == stop.mode == "max"  # higher is better, whatever Keras would guess
    assert callbacks["AtomicCheckpoint"].monitor == (name if validated else None)


def test_monitor_is_a_cli_flag_and_a_bad_name_is_a_one_line_error(tmp_path, capsys):
    import argparse

    from leukonet.cli.fit import add_parser, base_config

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert base_config(parser.parse_args(["fit", "--monitor", "val_accuracy"])).monitor == "val_accuracy"
    assert base_config(parser.parse_args(["fit"])).monitor == "val_loss"
    with pytest.raises(SystemExit):
        main(["fit", "--monitor", "accuracy"])
    assert "--monitor: invalid choice: 'accuracy'" in capsys.readouterr().err
    with pytest.raises(LeukonetError, match="--monitor 'val_acc': choose val_loss or val_accuracy"):
        leukonet.fit(FitConfig(monitor="val_acc", run_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_fit_keeps_the_epoch_of_the_best_validation_accuracy(demo, tmp_path):
    base, root = demo
    run = leukonet.fit(demo_fit_config(base, root, run_dir=str(tmp_path / "run"), epochs=5,
                                       monitor="val_accuracy", lr_schedule="cosine",
                                       stop_patience=100))
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    best = int(np.argmax(history["val_accuracy"].to_numpy())) + 1  # the first of any ties
    assert run.metrics["best_epoch"] == best and run.metrics["best_by"] == "val_accuracy"
    # model.keras is that epoch's: re-scored, it gives the accuracy logged then
    assert run.metrics["val_accuracy"] == pytest.approx(history["val_accuracy"][best - 1],
                                                        abs=1e-6)


@pytest.mark.slow
def test_a_multitask_fit_monitors_its_cell_type_accuracy(demo, tmp_path, recwarn):
    from leukonet.data.demo import DEMO_CLASSES

    base, root = demo
    grains = {c: "granular" if c.endswith(("eosinophil", "neutrophil")) else "plain"
              for c in DEMO_CLASSES}
    run = leukonet.fit(demo_fit_config(base, root, run_dir=str(tmp_path / "run"), epochs=3,
                                       monitor="val_accuracy",
                                       multitask={"name": "grains", "map": grains}))
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    best = int(np.argmax(history["val_cell_type_accuracy"].to_numpy())) + 1
    assert run.metrics["best_epoch"] == best and run.metrics["best_by"] == "val_cell_type_accuracy"
    # Keras' warning when the plateau or the stop monitors a name it was not given
    assert not [w for w in recwarn if "which is not available" in str(w.message)]
