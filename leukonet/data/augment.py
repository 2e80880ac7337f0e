"""Augmentation policy from flags: Keras preprocessing layers applied to uint8 batches.

Each batch gets its own seed (from the run seed, the epoch and the batch index), passed
to every layer's ``get_random_transformation``: the same seed gives the same batch
whatever the number of loader threads or the order they finish in.
"""
import numpy as np
from keras import layers, ops

# Rotation, zoom and shift fill with black, like the corners of the public set's copies.
_FILL = dict(fill_mode="constant", fill_value=0.0)


def build_policy(rotate=180.0, flip=True, zoom=0.1, shift=0.05, brightness=0.1, contrast=0.1,
                 hue=0.02, saturation=0.1):
    """The list of Keras layers for the switched-on augmentations (empty: none)."""
    # Colour first, geometry second: the fill stays black, as in the real copies.
    policy = []
    if brightness:
        policy.append(layers.RandomBrightness(brightness, value_range=(0, 255)))
    if contrast:
        policy.append(layers.RandomContrast(contrast, value_range=(0, 255)))
    if hue:
        policy.append(layers.RandomHue(hue, value_range=(0, 255)))
    if saturation:
        # RandomSaturation's factor is not a +- amount: 0.5 is the identity and a value v
        # scales saturation by v / (1 - v). Map +-saturation onto that scale.
        lo, hi = (1 - saturation) / (2 - saturation), (1 + saturation) / (2 + saturation)
        policy.append(layers.RandomSaturation((lo, hi), value_range=(0, 255)))
    if rotate:
        policy.append(layers.RandomRotation(rotate / 360.0, **_FILL))
    if flip:
        policy.append(layers.RandomFlip("horizontal_and_vertical"))
    if zoom:
        policy.append(layers.RandomZoom((-zoom, zoom), **_FILL))
    if shift:
        policy.append(layers.RandomTranslation((-shift, shift), (-shift, shift), **_FILL))
    return policy


def policy_from_config(config):
    return build_policy(config.rotate, config.flip, config.zoom, config.shift, config.brightness,
                        config.contrast, config.hue, config.saturation)


def apply_policy(policy, images: np.ndarray, seed: int) -> np.ndarray:
    """Augment a ``(B, H, W, 3)`` batch; returns float32 in [0, 255]."""
    x = images.astype(np.float32)
    if not policy:
        return x
    x = ops.convert_to_tensor(x)
    for k, layer in enumerate(policy):
        t = layer.get_random_transformation(x, training=True, seed=(int(seed) * 31 + k) % (2**31 - 1))
        x = layer.transform_images(x, t, training=True)
    return np.clip(ops.convert_to_numpy(x), 0, 255).astype(np.float32)


def batch_seed(seed, epoch, index):
    """A 31-bit seed unique to (run seed, epoch, batch)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0] >> 1)
