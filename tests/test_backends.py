"""tf.distribute on a CPU split into two logical devices, and the core on the JAX backend
(``--ema`` on both).

Both run in child processes: logical devices and the Keras backend are fixed at start-up.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

_PREPARE = """
from leukonet.data.demo import make_demo_data
from leukonet.data.manifest import Manifest
root = make_demo_data("data", sources_per_class=(6, 2), copies_per_source=3, image_size=(30, 40))
m = Manifest.from_folder(root).dedup().group()
for name, part in m.split(val=0.25, seed=0).items():
    part.to_csv(f"{name}.csv", overwrite=True, rejects=False)
common = dict(manifest="train.csv", val_manifest="val.csv", data_root="data", backbone="simple_cnn",
              head="gap", weights="none", image_size=[30, 40], epochs=1, batch_size=16, lr=1e-3,
              workers=1, dropout=0.0, overwrite=True)
"""


# --ema on the JAX backend and under the mirrored strategy: Keras swaps the optimizer's
# average into the model's variables at each epoch end and back when the next epoch begins;
# a spy listed after the checkpoints sees what they saw. The swap is checked at epoch 1:
# after the last epoch Keras copies the average into the slot too, before the fit ends.
_EMA_SPY = """
import keras
import numpy as np
from leukonet.train import trainer as fit_module
begins, ends = [], []
class Spy(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        begins.append([v.numpy().copy() for v in self.model.trainable_variables])
    def on_epoch_end(self, epoch, logs=None):
        slot = self.model.optimizer._model_variables_moving_average
        ends.append(([v.numpy().copy() for v in self.model.trainable_variables],
                     [v.numpy().copy() for v in slot]))
_original = fit_module._callbacks
fit_module._callbacks = lambda *a, **k: _original(*a, **k) + [Spy()]
"""
_EMA_CHECKS = """
fit_module._callbacks = _original
model_1, slot_1 = ends[0]
assert any(not np.array_equal(x, y) for x, y in zip(model_1, slot_1)), "the average was not swapped in"
for x, y in zip(begins[1], slot_1):  # epoch 2 trains on from the weights, not the average
    np.testing.assert_array_equal(x, y)
last = leukonet.load_model(c.path / "last.keras")
for x, y in zip(last.trainable_variables, ends[-1][0]):
    np.testing.assert_array_equal(x.numpy(), y)
print("EMA OK")
"""


def _child(script, tmp_path, env=None):
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_mirrored_strategy_matches_the_default_on_two_cpu_devices(tmp_path):
    script = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
assert len(tf.config.list_logical_devices("CPU")) == 2
import leukonet
""" + _PREPARE + """
a = leukonet.fit(run_dir="default", **common)
b = leukonet.fit(run_dir="mirrored", strategy="mirrored", **common)
print("LOSSES", a.history["loss"].iloc[0], b.history["loss"].iloc[0])
""" + _EMA_SPY + """
c = leukonet.fit(run_dir="mirrored-ema", strategy="mirrored", ema=0.8, **{**common, "epochs": 2})
""" + _EMA_CHECKS
    out = _child(script, tmp_path)
    default, mirrored = (float(v) for v in out.split("LOSSES")[1].split()[:2])
    # Same data, seed and initial weights; BatchNorm sees per-replica halves of each
    # batch under the mirrored strategy, so the trajectories differ a little.
    assert abs(default - mirrored) < 0.3 * max(default, mirrored)
    assert "EMA OK" in out


def test_core_runs_on_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax", reason="the JAX backend test needs jax (pip install -e '.[dev]')")
    script = """
import sys
sys.modules["tensorflow"] = None  # any import of TensorFlow now fails: the core must not need it
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
import numpy as np
import leukonet
from leukonet.models.build import build_model
from leukonet.config import FitConfig
""" + _PREPARE + """
m = build_model(FitConfig(backbone="resnet18", head="conv", weights="none"), 3, (32, 32))
assert m.predict(np.zeros((2, 32, 32, 3)), verbose=0).shape == (2, 3)
# the default (jit None: Keras' "auto") compiles the step on JAX; --no-jit does not
from leukonet.train.fit import _compile
_compile(m, FitConfig(), 1e-3, None)
assert m.jit_compile is True, m.jit_compile
_compile(m, FitConfig(jit=False), 1e-3, None)
assert m.jit_compile is False
run = leukonet.fit(run_dir="run", precise_bn=2, lr_schedule="cosine", nucleus_crop=0.9, mixup=0.2,
                   **common)
again = leukonet.load_run("run").model
x = np.random.default_rng(0).uniform(0, 255, (2, 30, 40, 3)).astype("float32")
np.testing.assert_allclose(again.predict(x, verbose=0), run.model.predict(x, verbose=0), rtol=1e-5)
ev = run.evaluate("test.csv", "data", figures=False)
table = run.predict(images=["data/TEST"])
fig = run.explain(sorted(__import__("glob").glob("data/TEST/*/*.png"))[:2])
# an ensemble of members that read images differently (the crop run and a plain 24x32 one)
plain = leukonet.fit(run_dir="plain", **{**common, "image_size": [24, 32]})
both = leukonet.ensemble(["run", "plain"], out="both")
assert len(both.model.inputs) == 2
both_ev = both.evaluate("test.csv", "data", figures=False, tta=2)
print("JAX OK", ev.metrics["accuracy"], len(table), both_ev.metrics["images"])
""" + _EMA_SPY + """
c = leukonet.fit(run_dir="ema", ema=0.8, **{**common, "epochs": 2})
""" + _EMA_CHECKS
    out = _child(script, tmp_path, env={"KERAS_BACKEND": "jax"})
    assert "JAX OK" in out and "EMA OK" in out


def _free_ports(n):
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multiworker_strategy_with_two_local_workers(tmp_path):
    """Two worker processes on 127.0.0.1, joined through TF_CONFIG, train one epoch together."""
    import json

    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    script = "import leukonet\n" + _PREPARE + """
run = leukonet.fit(run_dir="run", strategy="multiworker", **common)
print("LOSS", run.history["loss"].iloc[0])
"""
    procs = []
    for index in range(2):
        cwd = tmp_path / f"worker{index}"
        cwd.mkdir()
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CONFIG": tf_config}
        procs.append(subprocess.Popen([sys.executable, "-c", script], cwd=cwd, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, out[-2000:] + err[-3000:]
            outs.append(out)
    finally:
        for proc in procs:
            proc.kill()
    losses = [float(o.split("LOSS")[1].split()[0]) for o in outs]
    # Gradients are all-reduced: both workers hold the same weights and saw the same data.
    assert abs(losses[0] - losses[1]) < 1e-3 * max(losses)
    assert all((tmp_path / f"worker{i}" / "run" / "model.keras").is_file() for i in range(2))
