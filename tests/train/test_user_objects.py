"""The Python API takes what Keras users bring: their own callbacks (beside leukonet's, in
every model, kept for --resume where they can be) and their own headless network as the
backbone (copied into the run, rebuilt from there, reloaded anywhere)."""
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.compat import no_array_copy_warning
from leukonet.errors import LeukonetError
from tests.conftest import demo_fit_config
from tests.train._interrupt import InterruptAfterTwoEpochs
from tests.train._user_callbacks import EpochRecorder, FailAt, recorded

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
RECORDER = "tests.train._user_callbacks:EpochRecorder"


def _config(demo, tmp_path, **kw):
    base, root = demo
    return demo_fit_config(base, root, **{"run_dir": str(tmp_path / "run"), **kw})


def _python(args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _tiny_net(shape=(None, None, 3), name="tiny"):
    """A user's headless network: image in, a 4-D feature map out (BatchNorm inside)."""
    image = keras.Input(shape)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(image, x, name=name)


class Collector(keras.callbacks.Callback):
    """A callback that keeps what it sees in memory: not storable (no get_config)."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir, self.epochs, self.logs, self.checkpointed, self.began = run_dir, [], [], [], 0

    def on_train_begin(self, logs=None):
        self.began += 1

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.logs.append(dict(logs or {}))
        self.checkpointed.append((Path(self.run_dir) / "model.keras").is_file())


# --- callbacks ---------------------------------------------------------------------------

def test_a_users_callback_sees_every_epoch_its_logs_and_the_checkpoint_and_is_named_once(
        demo, tmp_path, caplog):
    collector = Collector(tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="leukonet"):
        run = leukonet.fit(_config(demo, tmp_path, epochs=2), callbacks=[collector], verbose=0)
    assert collector.epochs == [0, 1]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(collector.logs[-1])
    assert collector.logs[-1]["val_loss"] == pytest.approx(run.history["val_loss"].iloc[-1])
    assert collector.checkpointed == [True, True]  # after leukonet's: model.keras already written
    warnings = [r.getMessage() for r in caplog.records if "cannot be stored" in r.getMessage()]
    assert len(warnings) == 1
    assert "Collector" in warnings[0] and f"leukonet.fit(resume='{run.path}', callbacks=[...])" in warnings[0]
    assert run.config.callbacks is None  # nothing stored
    assert len(run.history) == 2 and run.model.output_shape == (None, 4)


def test_a_storable_callback_is_kept_and_runs_again_after_a_resume_in_a_new_process(demo, tmp_path,
                                                                                     caplog):
    log = tmp_path / "epochs.jsonl"
    recorder = EpochRecorder(log, checkpoint=str(tmp_path / "run" / "model.keras"))
    with pytest.raises(KeyboardInterrupt), caplog.at_level(logging.WARNING, logger="leukonet"):
        # the kill after the recorder: the recorder saw epochs 1 and 2
        leukonet.fit(_config(demo, tmp_path, epochs=4), verbose=0,
                     callbacks=[recorder, InterruptAfterTwoEpochs()])
    warned = " ".join(r.getMessage() for r in caplog.records if "cannot be stored" in r.getMessage())
    assert "InterruptAfterTwoEpochs" in warned and "EpochRecorder" not in warned
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["callbacks"] == [{"class": RECORDER, "kwargs": recorder.get_config()}]
    assert [line["epoch"] for line in recorded(log)] == [0, 1]
    done = _python(["-m", "leukonet", "fit", "--resume", str(tmp_path / "run")], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = recorded(log)
    assert [line["epoch"] for line in lines] == [0, 1, 2, 3]  # rebuilt from config.json
    assert all(line["checkpoint"] and "val_loss" in line["keys"] for line in lines)


def test_members_of_an_ensemble_run_the_users_callbacks(demo, tmp_path):
    collector, log = Collector(tmp_path / "none"), tmp_path / "epochs.jsonl"
    run = leukonet.fit(_config(demo, tmp_path, epochs=1, ensemble=2), verbose=0,
                       callbacks=[collector, EpochRecorder(log)])
    assert collector.began == 2 and collector.epochs == [0, 0]
    assert len(recorded(log)) == 2  # the given instance ran, not a second one built from its spec
    for k in (0, 1):
        member = json.loads((run.path / "members" / str(k) / "config.json").read_text())
        assert member["callbacks"] == [{"class": RECORDER, "kwargs": {"path": str(log),
                                                                      "checkpoint": None}}]


def test_cli_callbacks_with_json_keyword_arguments(demo, tmp_path, capsys):
    base, root = demo
    log, csv = tmp_path / "epochs.jsonl", tmp_path / "keras_log.csv"
    code = main(["fit", "--manifest", str(base / "train.csv"), "--val-manifest", str(base / "val.csv"),
                 "--data-root", str(root), "--image-size", "30x40", "--backbone", "simple_cnn",
                 "--head", "gap", "--weights", "none", "--batch-size", "16", "--workers", "1",
                 "--epochs", "2", "--run-dir", str(tmp_path / "run"),
                 "--callback", f'{RECORDER}={json.dumps({"path": str(log)})}',
                 "--callback", f'keras.callbacks:CSVLogger={{"filename": "{csv}"}}'])
    assert code == 0, capsys.readouterr().err
    assert [line["epoch"] for line in recorded(log)] == [0, 1]
    assert len(pd.read_csv(csv)) == 2
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["callbacks"] == [{"class": RECORDER, "kwargs": {"path": str(log)}},
                                   {"class": "keras.callbacks:CSVLogger",
                                    "kwargs": {"filename": str(csv)}}]


@pytest.mark.parametrize("spec, message", [
    ("tests.train._user_callbacks:Nope",
     "--callback tests.train._user_callbacks:Nope: module tests.train._user_callbacks has no Nope"),
    ("no_such_module_xyz:Logger", "--callback no_such_module_xyz:Logger: cannot import no_such_module_xyz"),
    ("json:JSONDecoder", "--callback json:JSONDecoder: not a keras.callbacks.Callback class"),
    ("keras.callbacks:CSVLogger", "--callback keras.callbacks:CSVLogger: CSVLogger(**{}) failed"),
    ('keras.callbacks:CSVLogger={"filename": ', "--callback keras.callbacks:CSVLogger: its keyword "
                                                "arguments are not JSON"),
    ('keras.callbacks:CSVLogger=["log.csv"]', "--callback keras.callbacks:CSVLogger: its keyword "
                                              "arguments must be a JSON object"),
    ("CSVLogger", "--callback CSVLogger: expected module:Name"),
])
def test_bad_callback_specs_are_refused_before_training_in_one_line(demo, tmp_path, capsys, spec,
                                                                     message):
    base, root = demo
    code = main(["fit", "--manifest", str(base / "train.csv"), "--data-root", str(root),
                 "--backbone", "simple_cnn", "--weights", "none", "--run-dir", str(tmp_path / "run"),
                 "--callback", spec])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_callback_that_raises_leaves_a_run_that_resumes(demo, tmp_path, capsys):
    base, root = demo
    # a LeukonetError from a callback reaches the command line as one line
    code = main(["fit", "--manifest", str(base / "train.csv"), "--val-manifest", str(base / "val.csv"),
                 "--data-root", str(root), "--image-size", "30x40", "--backbone", "simple_cnn",
                 "--head", "gap", "--weights", "none", "--batch-size", "16", "--workers", "1",
                 "--epochs", "1", "--run-dir", str(tmp_path / "cli"),
                 "--callback", "tests.train._user_callbacks:FailAt"])
    err = capsys.readouterr().err
    assert code == 2 and err == "error: experiment tracker offline at epoch 1\n", err
    # any other error is the normal exception; the run it leaves resumes
    with pytest.raises(RuntimeError, match="tracker offline at epoch 2"):
        leukonet.fit(_config(demo, tmp_path, epochs=3), verbose=0,
                     callbacks=[FailAt(epoch=1, kind="RuntimeError")])
    d = tmp_path / "run"
    assert json.loads((d / "state.json").read_text())["last_epoch"] == 2
    run = leukonet.fit(resume=d, verbose=0)
    assert run.history["epoch"].tolist() == [1, 2, 3] and run.model is not None


def test_callbacks_must_be_keras_callbacks(demo, tmp_path):
    with pytest.raises(LeukonetError, match="is not a keras.callbacks.Callback instance"):
        leukonet.fit(_config(demo, tmp_path), callbacks=[print])


# --- your own backbone -------------------------------------------------------------------

def test_a_users_network_trains_resumes_from_its_copy_evaluates_and_reloads_elsewhere(demo, tmp_path):
    base, root = demo
    net = _tiny_net()
    before = [w.copy() for w in net.get_weights()]
    with pytest.raises(KeyboardInterrupt):
        leukonet.fit(_config(demo, tmp_path, epochs=3, freeze_epochs=1), backbone=net, verbose=0,
                     callbacks=[InterruptAfterTwoEpochs()])
    for a, b in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)  # the user's object is never trained
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backbone"] == "file:backbone.keras" and config["image_size"] == [30, 40]
    assert config["backbone_preprocessing"] == "none" and config["weights"] == "none"
    moved = tmp_path / "elsewhere" / "run"  # the run moves: it rebuilds from its own copy
    shutil.move(tmp_path / "run", moved)
    run = leukonet.fit(resume=moved, verbose=0)
    assert run.history["epoch"].tolist() == [1, 2, 3]
    assert run.model.name == "leukonet_custom_gap"
    assert run.model.get_layer("backbone").count_params() == net.count_params()
    ev = run.evaluate(base / "test.csv", root, figures=False, out_dir=tmp_path / "eval")
    assert 0 <= ev.metrics["accuracy"] <= 1 and ev.metrics["images"] > 0
    x = np.random.default_rng(0).uniform(0, 255, (2, 30, 40, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, leukonet; m = leukonet.load_run(sys.argv[1]).model; "
            "np.save(sys.argv[2], m.predict(np.load(sys.argv[3]), verbose=0))")
    done = _python(["-c", code, str(moved), str(tmp_path / "p.npy"), str(tmp_path / "x.npy")],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), run.model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_frozen_users_network_keeps_its_weights_and_an_ensemble_copies_it(demo, tmp_path):
    net = _tiny_net((32, 32, 3))  # a fixed input: the run's size
    run = leukonet.fit(_config(demo, tmp_path, epochs=1, ensemble=2, freeze_backbone=True,
                               image_size="default"), backbone=net, verbose=0)
    assert run.config.image_size == [32, 32] and run.config.backbone == "file:backbone.keras"
    for k in (0, 1):
        member = leukonet.load_run(run.path / "members" / str(k))
        assert member.config.backbone == "file:backbone.keras"
        assert (member.path / "backbone.keras").is_file()
        trained = member.model.get_layer("backbone").get_weights()
        for a, b in zip(net.get_weights(), trained):
            np.testing.assert_array_equal(a, b)  # frozen: BatchNorm statistics included
    assert (run.path / "backbone.keras").is_file()  # members not yet started copy it on --resume
    assert run.predict(images=[str(demo[1] / "TEST")]).shape[0] > 0


def test_cli_backbone_file_and_its_preprocessing(demo, tmp_path, monkeypatch, capsys):
    base, root = demo
    with no_array_copy_warning():
        _tiny_net().save(tmp_path / "my_net.keras")
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--manifest", str(base / "train.csv"), "--val-manifest", str(base / "val.csv"),
            "--data-root", str(root), "--image-size", "30x40", "--head", "gap", "--batch-size", "16",
            "--workers", "1", "--epochs", "1"]
    assert main([*args, "--backbone", "simple_cnn", "--backbone-preprocessing", "tf",
                 "--run-dir", "bad"]) == 2
    assert "only for your own backbone" in capsys.readouterr().err
    assert main([*args, "--backbone", "my_net.keras", "--backbone-preprocessing", "tf",
                 "--run-dir", "run"]) == 0, capsys.readouterr().err
    run = leukonet.load_run(tmp_path / "run")
    assert run.config.backbone == "file:backbone.keras" and run.config.backbone_preprocessing == "tf"
    assert run.model.get_layer("preprocess").mode == "tf"
    # its config.json starts another run: the backbone read from beside that config
    assert main(["fit", "--config", "run/config.json", "--run-dir", "again"]) == 0
    again = tmp_path / "again"
    assert (again / "backbone.keras").read_bytes() == (tmp_path / "run" / "backbone.keras").read_bytes()


def _image_in_vector_out():
    image = keras.Input((10,))
    return keras.Model(image, keras.layers.Dense(4)(image))


def _with_top():
    net = _tiny_net((32, 32, 3))
    return keras.Model(net.input, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(net.output)))


def _with_lambda():
    image = keras.Input((32, 32, 3))
    return keras.Model(image, keras.layers.Lambda(lambda x: x * 2)(image))


@pytest.mark.parametrize("make, changes, message", [
    (lambda: keras.layers.Dense(3), {}, "backbone=Dense: not a keras.Model"),
    (lambda: keras.applications.MobileNetV2, {}, "not a keras.Model; .*\\(call it"),
    (_image_in_vector_out, {}, r"its input \(None, 10\) is not an image batch"),
    (_with_top, {}, r"its output \(None, 4\) is not a feature map .*include_top=False"),
    (lambda: _tiny_net((32, 32, 3)), {"image_size": [30, 40]},
     "--image-size 30x40: backbone tiny takes 32x32 images"),
    (lambda: _tiny_net(), {"image_size": "default"}, "takes images of any size: pass --image-size"),
    (_with_lambda, {"image_size": "default"}, "cannot load it as a Keras model .*holds a Lambda layer"),  # safe mode
])
def test_what_cannot_be_a_backbone_is_refused_in_one_line(demo, tmp_path, make, changes, message):
    with pytest.raises(LeukonetError, match=message) as e:
        leukonet.fit(_config(demo, tmp_path, **changes), backbone=make(), verbose=0)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()
