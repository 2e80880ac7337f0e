"""Grad-CAM (Selvaraju et al. 2017) for leukonet models, every backbone included.

The model is cut at the backbone's Grad-CAM layer (from the registry): image →
preprocessing → backbone up to that layer (A) → rest of the backbone → head. The class
score's gradient with respect to A weights A's channels. Keras has no backend-neutral
gradient API, so the gradient step has one branch per backend (TensorFlow, JAX).
"""
import keras
import numpy as np
from PIL import Image

from leukonet.errors import LeukonetError
from leukonet.models.build import BACKBONE_LAYER, OUTPUT


def _gradcam_layer(model, layer_name=None):
    from leukonet.models.registry import BACKBONES

    backbone = model.get_layer(BACKBONE_LAYER)
    if layer_name:
        return layer_name
    for name, spec in BACKBONES.items():  # model names are leukonet_<backbone>_<head>
        if model.name.startswith(f"leukonet_{name}_") and spec.gradcam_layer:
            return spec.gradcam_layer
    four_d = [l for l in backbone.layers if len(getattr(l, "output", None).shape or ()) == 4]
    return four_d[-1].name


class GradCAM:
    def __init__(self, model, layer_name=None):
        backbone = model.get_layer(BACKBONE_LAYER)
        self.layer = _gradcam_layer(model, layer_name)
        inner = backbone.get_layer(self.layer).output
        self.preprocess = model.get_layer("preprocess")
        self.to_layer = keras.Model(backbone.input, inner)
        self.after_layer = None if inner is backbone.output else keras.Model(inner, backbone.output)
        # The backbone's output inside the outer model: the head starts there. (The node
        # list is Keras' own record of where the nested backbone was called.)
        features = backbone._inbound_nodes[0].output_tensors[0]
        self.head = keras.Model([model.input, features], model.output)

    def _score(self, image, activations, classes):
        features = self.after_layer(activations) if self.after_layer is not None else activations
        out = self.head([image, features])
        probs = out[OUTPUT] if isinstance(out, dict) else out
        return keras.ops.sum(keras.ops.take_along_axis(probs, classes[:, None], axis=1)), probs

    def __call__(self, images, classes=None):
        """Heatmaps in [0, 1] at the images' size, and the probabilities."""
        x = keras.ops.convert_to_tensor(np.asarray(images, dtype=np.float32))
        activations = self.to_layer(self.preprocess(x))
        probs = keras.ops.convert_to_numpy(self._score(x, activations, keras.ops.zeros((len(images),), "int32"))[1])
        classes = probs.argmax(axis=1) if classes is None else np.asarray(classes)
        cls = keras.ops.convert_to_tensor(classes.astype("int32"))
        grads = self._gradient(x, activations, cls)
        a = keras.ops.convert_to_numpy(activations).astype(np.float32)
        weights = grads.mean(axis=(1, 2), keepdims=True)
        cam = np.maximum((weights * a).sum(axis=-1), 0)
        h, w = np.asarray(images).shape[1:3]
        maps = []
        for m in cam:
            m = m / m.max() if m.max() > 0 else m
            maps.append(np.asarray(Image.fromarray(m.astype(np.float32), "F").resize((w, h), Image.BILINEAR)))
        return np.clip(np.stack(maps), 0, 1), probs

    def _gradient(self, x, activations, cls):
        backend = keras.backend.backend()
        if backend == "tensorflow":
            from leukonet.tf_only import gradient

            return gradient(lambda a: self._score(x, a, cls)[0], activations)
        if backend == "jax":
            import jax

            return np.asarray(jax.grad(lambda a: self._score(x, a, cls)[0])(activations))
        raise LeukonetError(f"Grad-CAM supports the tensorflow and jax backends, not {backend}")


class EnsembleGradCAM:
    """Grad-CAM of an ensemble model: each member's map for the class the ensemble
    predicts, averaged (each map is in [0, 1] already, so every member weighs the same)."""

    def __init__(self, model, layer_name=None):
        from leukonet.models.ensemble import members

        self.model = model
        self.cams = [GradCAM(m, layer_name) for m in members(model)]

    def __call__(self, images, classes=None):
        x = np.asarray(images, dtype=np.float32)
        probs = np.asarray(self.model.predict_on_batch(x))
        classes = probs.argmax(axis=1) if classes is None else np.asarray(classes)
        return np.mean([cam(x, classes)[0] for cam in self.cams], axis=0), probs


def gradcam_for(model, layer_name=None):
    """``GradCAM`` for a single model, ``EnsembleGradCAM`` for an ensemble."""
    from leukonet.models.ensemble import members

    return GradCAM(model, layer_name) if members(model)[0] is model else EnsembleGradCAM(model, layer_name)


def overlay(image, heatmap, alpha=0.45):
    """Blend a heatmap (jet colour map) over a uint8 image."""
    from matplotlib import colormaps

    colour = colormaps["jet"](heatmap)[..., :3] * 255
    return np.clip((1 - alpha) * np.asarray(image, np.float32) + alpha * colour, 0, 255).astype(np.uint8)
