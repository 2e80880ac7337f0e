import keras
import numpy as np
import pytest

from leukonet.config import FitConfig
from leukonet.errors import LeukonetError
from leukonet.models.build import BACKBONE_LAYER, build_model
from leukonet.train.run import load_model

# These tests call Keras on TensorFlow tensors directly (predict, save, convert_to_numpy);
# TensorFlow's __array__ lacks NumPy 2's copy keyword (leukonet/compat.py says more)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE = (32, 40)


def _x(n=3):
    return np.random.default_rng(0).uniform(0, 255, (n, *SIZE, 3)).astype("float32")


@pytest.mark.parametrize("head", ["conv", "gap", "dense", "bilstm"])
def test_each_head(head):
    model = build_model(FitConfig(backbone="simple_cnn", head=head, weights="none", head_units=16), 5, SIZE)
    out = model.predict(_x(), verbose=0)
    assert out.shape == (3, 5)
    names = [l.name for l in model.layers]
    if head == "conv":
        assert {"head_conv", "head_bn", "head_pool", "head_dropout", "head_flatten"} <= set(names)
    if head == "bilstm":
        assert {"head_lstm_rows", "head_lstm_cols", "head_concat"} <= set(names)


def test_gap_head_is_small_on_vgg16():
    model = build_model(FitConfig(backbone="vgg16", head="gap", weights="none"), 4, (32, 32))
    head_params = model.count_params() - model.get_layer(BACKBONE_LAYER).count_params()
    assert head_params == 512 * 4 + 4  # GAP -> Dense: thousands, not the 120 M of VGG's top


def test_multitask_outputs():
    config = FitConfig(backbone="simple_cnn", head="gap", weights="none",
                       multitask={"name": "nucleus", "map": {}, "loss_weight": 0.5})
    model = build_model(config, 4, SIZE, aux_classes=["mononuclear", "polynuclear"])
    out = model.predict(_x(), verbose=0)
    assert out["cell_type"].shape == (3, 4) and out["nucleus"].shape == (3, 2)


def test_saved_model_reloads_in_safe_mode_and_predicts_the_same(tmp_path):
    model = build_model(FitConfig(backbone="simple_cnn", head="conv", weights="none"), 3, SIZE)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")  # safe_mode=True inside
    np.testing.assert_allclose(again.predict(_x(), verbose=0), model.predict(_x(), verbose=0), rtol=1e-5)
    assert not any(isinstance(l, keras.layers.Lambda) for l in again.layers)


def test_init_from_a_run_copies_the_backbone_and_replaces_the_head(tmp_path):
    first = build_model(FitConfig(backbone="simple_cnn", head="gap", weights="none", seed=1), 3, SIZE)
    for w in first.get_layer(BACKBONE_LAYER).weights:  # make the weights recognisable
        w.assign(np.full(w.shape, 0.01, "float32"))
    run = tmp_path / "run"
    run.mkdir()
    first.save(run / "model.keras")
    second = build_model(FitConfig(backbone="simple_cnn", head="conv", weights=str(run)), 7, SIZE)
    for a, b in zip(first.get_layer(BACKBONE_LAYER).weights, second.get_layer(BACKBONE_LAYER).weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert second.output_shape == (None, 7)
    assert "head_conv" in [l.name for l in second.layers]
    with pytest.raises(LeukonetError, match="does not match resnet18"):
        build_model(FitConfig(backbone="resnet18", head="gap", weights=str(run)), 3, (32, 32))


def test_init_from_a_weights_file(tmp_path):
    first = build_model(FitConfig(backbone="simple_cnn", head="gap", weights="none"), 3, SIZE)
    path = tmp_path / "backbone.weights.h5"
    first.get_layer(BACKBONE_LAYER).save_weights(path)
    second = build_model(FitConfig(backbone="simple_cnn", head="gap", weights=str(path)), 3, SIZE)
    a = first.get_layer(BACKBONE_LAYER).get_weights()
    b = second.get_layer(BACKBONE_LAYER).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    with pytest.raises(LeukonetError, match="no such file"):
        build_model(FitConfig(backbone="simple_cnn", weights=str(tmp_path / "nope.h5")), 3, SIZE)
