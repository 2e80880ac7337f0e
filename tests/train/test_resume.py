"""--resume after a kill at any moment: the resumed run is the unbroken one, from any folder."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest

import leukonet
from leukonet.cli import main
from leukonet.train import trainer as fit_module
from leukonet.train.run import load_model

pytestmark = pytest.mark.slow


def _fit_args(run, *extra):
    # relative paths, as typed in the folder that holds the data (the fixture's cwd)
    return ["fit", "--manifest", "train.csv", "--val-manifest", "val.csv", "--data-root", "data",
            "--image-size", "30x40", "--backbone", "simple_cnn", "--head", "gap", "--weights",
            "none", "--batch-size", "8", "--workers", "1", "--epochs", "5", "--lr-patience", "1",
            "--lr-factor", "0.5", "--run-dir", str(run), *extra]


def _run(args, cwd, **kw):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "leukonet", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def _same_history(a, b):
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    assert list(ha.columns) == list(hb.columns) and len(ha) == len(hb) == 5
    np.testing.assert_allclose(ha.to_numpy(float), hb.to_numpy(float), rtol=1e-5, atol=1e-6)


def _same_weights(a, b):
    for x, y in zip(load_model(a / "last.keras").weights, load_model(b / "last.keras").weights):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_sigkill_inside_an_epoch_then_resume_from_another_folder_is_the_unbroken_run(demo,
                                                                                     tmp_path):
    base, _ = demo
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _run(_fit_args(whole), cwd=base).returncode == 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "leukonet", *_fit_args(killed)], cwd=base,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        state = killed / "state.json"
        if state.is_file() and json.loads(state.read_text()).get("last_epoch", 0) >= 2:
            break
        time.sleep(0.02)
    time.sleep(0.3)  # inside epoch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run(["fit", "--resume", str(killed)], cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-2000:]
    # the same epochs, losses, validation scores and learning rates (the plateau halved it
    # on the same epochs), and the same weights: dropout, batch order and the counters of
    # ReduceLROnPlateau / EarlyStopping were all restored
    _same_history(whole, killed)
    _same_weights(whole, killed)
    rates = [float(np.asarray(load_model(d / "last.keras").optimizer.learning_rate))
             for d in (whole, killed)]
    assert rates[0] == rates[1] < 1e-4  # the plateau lowered it (the test means something)
    config = json.loads((killed / "config.json").read_text())
    assert os.path.isabs(config["manifest"]) and os.path.isabs(config["data_root"])


def test_a_run_killed_in_its_first_epoch_resumes(demo, tmp_path, monkeypatch):
    # Keras' CSVLogger creates history.csv when training begins: a kill in epoch 1 leaves
    # it empty (0 bytes), which --resume read as a pandas EmptyDataError
    base, root = demo
    from tests.conftest import demo_fit_config

    class KillInFirstEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    def config(name):
        return demo_fit_config(base, root, epochs=2, run_dir=str(tmp_path / name))

    whole = leukonet.fit(config("whole"), verbose=0)
    original = fit_module._callbacks
    monkeypatch.setattr(fit_module, "_callbacks", lambda *a, **k: original(*a, **k) + [KillInFirstEpoch()])
    with pytest.raises(KeyboardInterrupt):
        leukonet.fit(config("killed"), verbose=0)
    monkeypatch.setattr(fit_module, "_callbacks", original)
    killed = tmp_path / "killed"
    assert (killed / "history.csv").stat().st_size == 0
    resumed = leukonet.fit(resume=killed, verbose=0)
    assert resumed.metrics["epochs_run"] == 2
    np.testing.assert_allclose(resumed.history.to_numpy(float), whole.history.to_numpy(float),
                               rtol=1e-5, atol=1e-6)


def test_resume_reads_the_runs_own_manifests(demo, tmp_path, monkeypatch):
    base, root = demo
    from tests.conftest import demo_fit_config
    from tests.train._interrupt import InterruptAfterTwoEpochs

    shutil.copy(base / "train.csv", tmp_path / "train.csv")
    shutil.copy(base / "classes.json", tmp_path / "classes.json")
    config = demo_fit_config(base, root, epochs=3, run_dir=str(tmp_path / "run"),
                             manifest=str(tmp_path / "train.csv"))
    original = fit_module._callbacks
    monkeypatch.setattr(fit_module, "_callbacks", lambda *a, **k: original(*a, **k) + [InterruptAfterTwoEpochs()])
    with pytest.raises(KeyboardInterrupt):
        leukonet.fit(config, verbose=0)
    monkeypatch.setattr(fit_module, "_callbacks", original)
    (tmp_path / "train.csv").unlink()  # the user's manifest is gone; the run's copy is not
    run = leukonet.fit(resume=tmp_path / "run", verbose=0)
    assert run.metrics["epochs_run"] == 3


def test_resuming_a_finished_run_keeps_its_training_time(demo, tmp_path, capsys):
    base, root = demo
    from tests.conftest import demo_fit_config

    run = leukonet.fit(demo_fit_config(base, root, epochs=1, run_dir=str(tmp_path / "run")),
                       verbose=0)
    before = (run.path / "metrics.json").read_bytes()
    assert run.metrics["train_seconds"] > 0
    assert main(["fit", "--resume", str(run.path)]) == 0
    assert "finished already" in capsys.readouterr().out
    assert (run.path / "metrics.json").read_bytes() == before


def test_a_fit_that_fails_before_its_first_epoch_needs_no_overwrite_to_retry(demo, tmp_path,
                                                                            capsys):
    base, root = demo
    bad_root = tmp_path / "data"
    shutil.copytree(root, bad_root)
    frame = pd.read_csv(base / "train.csv")
    for rel in frame["path"]:
        (bad_root / rel).write_bytes(b"not an image")  # every image went bad after the build
    args = ["fit", "--manifest", str(base / "train.csv"), "--val-manifest", str(base / "val.csv"),
            "--data-root", str(bad_root), "--image-size", "30x40", "--backbone", "simple_cnn",
            "--head", "gap", "--weights", "none", "--epochs", "1", "--batch-size", "8",
            "--workers", "1", "--run-dir", str(tmp_path / "run")]
    assert main(args) == 2
    assert "not an image" in capsys.readouterr().err
    shutil.rmtree(bad_root)
    shutil.copytree(root, bad_root)  # repaired
    assert main(args) == 0  # no --overwrite needed: the failed run finished no epoch
    # a run that finished an epoch is still protected
    assert main(args) == 2
    assert "pass --overwrite" in capsys.readouterr().err
