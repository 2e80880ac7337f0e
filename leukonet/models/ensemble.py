"""The ensemble model: several leukonet models' class probabilities averaged.

One Keras model (plain 0-255 RGB in, ``cell_type`` out) holding the members as nested
models named ``<model name>_member<k>``, so it saves, loads in safe mode, evaluates, predicts and
exports like a single model. Built by ``leukonet.train.ensemble``.
"""
import re

import keras

from leukonet.models.build import OUTPUT

_MEMBER = re.compile(r".+_member\d+")  # member k of an ensemble: <its model name>_member<k>


def build_ensemble_model(models) -> keras.Model:
    """A model whose ``cell_type`` output is the mean of ``models``' probabilities (member k
    is renamed ``<name>_member<k>``; they must share one input shape)."""
    image = keras.Input(tuple(models[0].input_shape[1:]), name="image")
    outputs = []
    for k, model in enumerate(models):
        # unique inside the ensemble, and still leukonet_<backbone>_<head>... (Grad-CAM reads it)
        model.name = f"{model.name}_member{k}"
        outputs.append(model(image))
    mean = keras.layers.Average(dtype="float32", name=OUTPUT)(outputs)
    return keras.Model(image, mean, name="leukonet_ensemble")


def members(model) -> list:
    """The member models of an ensemble model, or ``[model]`` for a single model."""
    return [layer for layer in model.layers if _MEMBER.fullmatch(layer.name)] or [model]
