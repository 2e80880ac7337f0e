"""Two fused augmentation layers: all geometry in one resampling, all colour in one matmul.

Keras' own layers (RandomRotation, RandomZoom, RandomTranslation, RandomFlip,
RandomBrightness, RandomContrast, RandomHue, RandomSaturation) each make a full pass over
the batch, three of them a separate bilinear resampling and two an RGB -> HSV -> RGB round
trip; run one after another they were ~97 % of the loader's time with augmentation on
(benchmarks/README.md). Here the same random transformations are composed first:

- ``RandomGeometry``: rotation, flips, zoom and shift as one affine matrix per image,
  applied by ``keras.ops.image.affine_transform`` (one resampling, black fill).
- ``RandomStain``: brightness, contrast, saturation and hue as one 3x3 matrix and offset
  per image on RGB (hue as a rotation about the grey axis in YIQ space), one batched
  matmul.

Both keep the Keras preprocessing-layer protocol the policy uses
(``get_random_transformation`` then ``transform_images``), and draw their parameters from
numpy with the batch seed, so a seed gives the same batch on every backend.

Each also has ``transform_one``, the same transformation of one image of the batch by
OpenCV, which is what the loader runs (``augment.apply_policy``). Why not Keras there: on
the TensorFlow CPU backend ``keras.ops.image.affine_transform`` is TensorFlow's
``ImageProjectiveTransformV3``, 43 of the 74.5 ms a 32 x 240 x 320 batch took, and Keras
has no other resampler; OpenCV's ``warpAffine`` (float32 bilinear, the same sampling
points) and ``transform`` (the 3x4 colour matrix) do both layers in ~17 ms, release the
GIL so the loader's threads overlap, and agree with the ``keras.ops`` path to 0.02 of a
grey level (tests/data/test_fused_augment.py; benchmarks/README.md).
"""
import math

import keras
import numpy as np
from keras import ops

try:
    import cv2
except ImportError:  # a core dependency; absent only on a hand-made environment
    cv2 = None

# RGB -> YIQ (NTSC); hue is the angle in the I-Q plane, Y the luma.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)
_LUMA = _YIQ[0]


def _uniform(rng, amount, n):
    return rng.uniform(-amount, amount, n) if amount else np.zeros(n)


class _FusedRandomLayer(keras.layers.Layer):
    """Called directly, draws its own (unseeded) transformation; the policy draws it with
    the batch seed through the two methods instead."""

    def call(self, images, training=True):
        return self.transform_images(images, self.get_random_transformation(images), training)


class RandomGeometry(_FusedRandomLayer):
    """Rotate by up to +-``rotate`` degrees, flip each axis with p=0.5 (``flip``), zoom by
    a factor in [1 - zoom, 1 + zoom] and shift by up to +-``shift`` of the height/width,
    about the image centre, in one bilinear resampling; uncovered pixels are black."""

    def __init__(self, rotate=180.0, flip=True, zoom=0.1, shift=0.05, **kwargs):
        super().__init__(**kwargs)
        self.rotate, self.flip, self.zoom, self.shift = float(rotate), bool(flip), float(zoom), float(shift)

    def get_random_transformation(self, images, training=True, seed=None):
        b, h, w = (int(d) for d in images.shape[:3])  # not ops.shape: no tensor copy of a numpy batch
        rng = np.random.default_rng(seed)
        theta = np.deg2rad(_uniform(rng, self.rotate, b))
        scale = 1.0 + _uniform(rng, self.zoom, b)  # >1 samples a larger area: zoom out
        flips = rng.choice([-1.0, 1.0], (b, 2)) if self.flip else np.ones((b, 2))
        tx, ty = _uniform(rng, self.shift, b) * w, _uniform(rng, self.shift, b) * h
        cos, sin = np.cos(theta), np.sin(theta)
        # Output pixel p samples input q = R(theta) diag(s fx, s fy) (p - c) + c + t.
        m00, m01 = cos * scale * flips[:, 0], -sin * scale * flips[:, 1]
        m10, m11 = sin * scale * flips[:, 0], cos * scale * flips[:, 1]
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        a2 = cx + tx - m00 * cx - m01 * cy
        b2 = cy + ty - m10 * cx - m11 * cy
        zero = np.zeros(b)
        return np.stack([m00, m01, a2, m10, m11, b2, zero, zero], axis=1).astype("float32")

    def transform_images(self, images, transformation, training=True):
        if not training:
            return images
        return ops.image.affine_transform(images, ops.convert_to_tensor(transformation),
                                          interpolation="bilinear", fill_mode="constant",
                                          fill_value=0, data_format="channels_last")

    def transform_one(self, image, transformation, index, out):
        """Image ``index`` of the batch (float32 (H, W, 3), C-contiguous) into ``out``, by
        OpenCV: what ``transform_images`` does to it."""
        m = np.asarray(transformation[index, :6], np.float64).reshape(2, 3)
        # WARP_INVERSE_MAP: m maps output pixels to input ones, as affine_transform's does
        cv2.warpAffine(image, m, (image.shape[1], image.shape[0]), dst=out,
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def get_config(self):
        return {**super().get_config(), "rotate": self.rotate, "flip": self.flip, "zoom": self.zoom,
                "shift": self.shift}


class RandomStain(_FusedRandomLayer):
    """Per image: add up to +-``brightness`` x 255; scale contrast about the channel means by
    a factor in [1 - contrast, 1 + contrast]; scale saturation (distance from grey) by
    [1 - saturation, 1 + saturation]; turn hue by up to +-``hue`` of a full turn. Values
    are clipped to [0, 255]. Stain colour varies between labs and batches; this is its
    cheap linear model."""

    def __init__(self, brightness=0.1, contrast=0.1, hue=0.02, saturation=0.1, **kwargs):
        super().__init__(**kwargs)
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.hue, self.saturation = float(hue), float(saturation)

    def get_random_transformation(self, images, training=True, seed=None):
        b = int(images.shape[0])
        rng = np.random.default_rng(seed)
        offset = _uniform(rng, self.brightness, b) * 255.0
        contrast = 1.0 + _uniform(rng, self.contrast, b)
        sat = 1.0 + _uniform(rng, self.saturation, b)
        angle = _uniform(rng, self.hue, b) * 2 * math.pi
        mats = np.empty((b, 3, 3))
        for i in range(b):
            c, s = math.cos(angle[i]), math.sin(angle[i])
            hue = _YIQ_INV @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ _YIQ
            saturate = sat[i] * np.eye(3) + (1 - sat[i]) * np.outer(np.ones(3), _LUMA)
            mats[i] = hue @ saturate
        return dict(matrix=mats.astype("float32"), contrast=contrast.astype("float32"),
                    offset=offset.astype("float32"))

    def transform_images(self, images, transformation, training=True):
        if not training:
            return images
        x = ops.cast(images, "float32")
        b, h, w = (int(d) for d in ops.shape(x)[:3])
        matrix = ops.convert_to_tensor(transformation["matrix"])
        contrast = ops.convert_to_tensor(transformation["contrast"])[:, None, None]
        offset = ops.convert_to_tensor(transformation["offset"])[:, None, None]
        pixels = ops.reshape(x, (b, h * w, 3))
        mean = ops.mean(pixels, axis=1, keepdims=True)  # (b, 1, 3)
        # y = M (c (x - mean) + mean) + o = (c M) x + (M (1 - c) mean + o): one batched matmul
        # (an einsum over the pixels was 2-3x slower on the TensorFlow CPU backend).
        matrix_t = ops.transpose(matrix, (0, 2, 1))
        shift = ops.matmul((1.0 - contrast) * mean, matrix_t) + offset
        y = ops.matmul(pixels, contrast * matrix_t) + shift
        return ops.clip(ops.reshape(y, (b, h, w, 3)), 0.0, 255.0)

    def transform_one(self, image, transformation, index, out):
        """Image ``index`` of the batch (float32 (H, W, 3), C-contiguous) into ``out``, by
        OpenCV: what ``transform_images`` does to it."""
        m = transformation["matrix"][index].astype(np.float64)
        c = float(transformation["contrast"][index])
        mean = np.array(cv2.mean(image)[:3])
        # y = c M x + (M (1 - c) mean + o), as transform_images, as one 3x4 matrix
        affine = np.hstack([c * m, (m @ ((1.0 - c) * mean) + transformation["offset"][index])[:, None]])
        cv2.transform(image, affine, dst=out)
        np.clip(out, 0.0, 255.0, out=out)

    def get_config(self):
        return {**super().get_config(), "brightness": self.brightness, "contrast": self.contrast,
                "hue": self.hue, "saturation": self.saturation}
