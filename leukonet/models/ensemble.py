"""The ensemble model: several leukonet models' class probabilities averaged.

One Keras model (plain 0-255 RGB in, ``cell_type`` out) holding the members as nested
models named ``<model name>_member<k>``, so it saves, loads in safe mode, evaluates, predicts and
exports like a single model. Members that read images differently (another input size or
nucleus crop: ``leukonet.data.views``) take their own input: one per distinct view, named
``image``, ``image_1``, .... Built by ``leukonet.train.ensemble``.
"""
import re

import keras

from leukonet.models.build import OUTPUT

_MEMBER = re.compile(r".+_member\d+")  # member k of an ensemble: <its model name>_member<k>


def build_ensemble_model(models, view_of=None) -> keras.Model:
    """A model whose ``cell_type`` output is the mean of ``models``' probabilities (member k
    is renamed ``<name>_member<k>``). ``view_of[k]``: the input member k reads (default: all
    read input 0, and must share its shape)."""
    view_of = list(view_of or [0] * len(models))
    inputs = {}
    for k, v in enumerate(view_of):
        if v not in inputs:
            if v != len(inputs):
                raise ValueError(f"view_of must number the views in order of first use, not {view_of}")
            inputs[v] = keras.Input(tuple(models[k].input_shape[1:]), name="image" + (f"_{v}" if v else ""))
    outputs = []
    for k, model in enumerate(models):
        # unique inside the ensemble, and still leukonet_<backbone>_<head>... (Grad-CAM reads it)
        model.name = f"{model.name}_member{k}"
        outputs.append(model(inputs[view_of[k]]))
    mean = keras.layers.Average(dtype="float32", name=OUTPUT)(outputs)
    ins = [inputs[v] for v in range(len(inputs))]
    return keras.Model(ins[0] if len(ins) == 1 else ins, mean, name="leukonet_ensemble")


def members(model) -> list:
    """The member models of an ensemble model, or ``[model]`` for a single model."""
    return [layer for layer in model.layers if _MEMBER.fullmatch(layer.name)] or [model]
