"""`import leukonet` is enough for plain `keras.saving.load_model` (safe mode) on every
kind of model leukonet writes, and stays cheap: Keras is not imported by it."""
import subprocess
import sys

import keras
import numpy as np
import pytest

from leukonet.config import FitConfig
from leukonet.models.build import build_model
from leukonet.models.ensemble import build_ensemble_model

# These tests call Keras on TensorFlow tensors directly (predict, save, convert_to_numpy);
# TensorFlow's __array__ lacks NumPy 2's copy keyword (leukonet/compat.py says more)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _models(tmp_path):
    config = FitConfig(backbone="simple_cnn", head="gap", weights="none", dropout=0.0)
    single = build_model(config, 3, (32, 32))
    multitask = build_model(config.replace(multitask={"name": "lineage", "map": {}, "loss_weight": 0.5}),
                            3, (32, 32), aux_classes=["a", "b"])
    ensemble = build_ensemble_model([build_model(config, 3, (32, 32)) for _ in range(2)])
    multiview = build_ensemble_model([build_model(config, 3, (32, 32)),
                                      build_model(config, 3, (40, 40))], view_of=[0, 1])
    paths = {}
    for name, model in dict(single=single, multitask=multitask, ensemble=ensemble,
                            multiview=multiview).items():
        paths[name] = tmp_path / f"{name}.keras"
        model.save(paths[name])
    return paths, single


def test_import_leukonet_then_plain_keras_loads_every_kind(tmp_path):
    paths, single = _models(tmp_path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(single(x)))
    code = f"""
import sys, numpy as np
import leukonet
assert "keras" not in sys.modules, "import leukonet imported Keras"
import keras
for name in {sorted(paths)!r}:
    m = keras.saving.load_model(r"{tmp_path}/" + name + ".keras", safe_mode=True)
    print(name, m.name)
m = keras.saving.load_model(r"{paths['single']}")
y = keras.ops.convert_to_numpy(m(np.load(r"{tmp_path / 'x.npy'}")))
assert np.allclose(y, np.load(r"{tmp_path / 'y.npy'}"), atol=1e-5)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(line.split()[0] for line in done.stdout.splitlines()) == sorted(paths)


def test_without_leukonet_plain_keras_cannot_load(tmp_path):
    """The test above means something: without `import leukonet` the class is unknown."""
    paths, _ = _models(tmp_path)
    code = f"import keras; keras.saving.load_model(r'{paths['single']}')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "Preprocess" in done.stderr


def test_keras_imported_first_then_leukonet(tmp_path):
    paths, _ = _models(tmp_path)
    code = f"import keras, leukonet; keras.saving.load_model(r'{paths['ensemble']}'); print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
