import keras
import numpy as np
import pytest

from leukonet.config import FitConfig
from leukonet.errors import LeukonetError
from leukonet.models import registry
from leukonet.models.build import BACKBONE_LAYER, build_model
from leukonet.models.preprocessing import Preprocess


@pytest.mark.slow
@pytest.mark.parametrize("name", list(registry.BACKBONES))
def test_every_backbone_builds_and_runs_at_its_minimum_size(name):
    spec = registry.get_backbone(name)
    size = (spec.min_size, spec.min_size + 8)
    model = build_model(FitConfig(backbone=name, head="gap", weights="none"), 4, size)
    out = model.predict(np.random.default_rng(0).uniform(0, 255, (2, *size, 3)), verbose=0)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-4)
    backbone = model.get_layer(BACKBONE_LAYER)
    assert backbone.count_params() == spec.params
    if spec.gradcam_layer:
        assert len(backbone.get_layer(spec.gradcam_layer).output.shape) == 4


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_preprocessing_matches_keras_applications(mode):
    from keras.applications import imagenet_utils

    x = np.random.default_rng(1).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    expected = imagenet_utils.preprocess_input(x.copy(), mode=mode)
    got = keras.ops.convert_to_numpy(Preprocess(mode)(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_preprocessing_none_and_bad_mode():
    x = np.arange(12, dtype="float32").reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(Preprocess("none")(x)), x)
    with pytest.raises(ValueError):
        Preprocess("zscore")


def test_unknown_names_and_small_sizes_are_one_line_errors():
    with pytest.raises(LeukonetError, match="unknown backbone 'resnet1000'; choose one of: .*simple_cnn"):
        registry.get_backbone("resnet1000")
    with pytest.raises(LeukonetError, match="unknown head 'mlp'"):
        build_model(FitConfig(backbone="simple_cnn", head="mlp", weights="none"), 3, (32, 32))
    with pytest.raises(LeukonetError, match="below inception_resnet_v2's minimum of 75"):
        build_model(FitConfig(backbone="inception_resnet_v2", weights="none"), 3, (64, 64))


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    import keras.src.applications.mobilenet_v2 as mv2

    monkeypatch.setattr(mv2.file_utils, "get_file", offline)
    with pytest.raises(LeukonetError, match="could not get ImageNet weights for mobilenet_v2.*--weights"):
        build_model(FitConfig(backbone="mobilenet_v2", head="gap", weights="imagenet"), 3, (32, 32))
    with pytest.raises(LeukonetError, match="simple_cnn has no ImageNet weights"):
        build_model(FitConfig(backbone="simple_cnn", weights="imagenet"), 3, (32, 32))
