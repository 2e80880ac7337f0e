"""The registered preprocessing layer: plain 0-255 RGB in, what the backbone expects out.

Living inside the model (not in the loader) means a saved model takes raw RGB pixels
and reloads with ``keras.saving.load_model`` in safe mode: a registered layer with a
config, never a Lambda.
"""
import keras
from keras import ops

# keras.applications.imagenet_utils constants (caffe: BGR means; torch: RGB mean/std).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
MODES = ("caffe", "tf", "torch", "none")


@keras.saving.register_keras_serializable(package="leukonet")
class Preprocess(keras.layers.Layer):
    """``caffe``: RGB→BGR minus ImageNet means; ``tf``: scale to [-1, 1]; ``torch``:
    [0, 1] then ImageNet mean/std; ``none``: unchanged (models that rescale inside)."""

    def __init__(self, mode="tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"preprocessing mode {mode!r}: expected one of {MODES}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_STD, self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
