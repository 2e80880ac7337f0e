"""Augmentation policy from flags: preprocessing layers applied to uint8 batches.

The policy is at most two fused layers (``fused_augment``): colour/stain jitter, then
geometry, each one pass over the batch. Each batch gets its own seed (from the run seed,
the epoch and the batch index), passed to every layer's ``get_random_transformation``: the
same seed gives the same batch whatever the number of loader threads or the order they
finish in.
"""
import numpy as np
from keras import ops

from leukonet.data.fused_augment import RandomGeometry, RandomStain


def build_policy(rotate=180.0, flip=True, zoom=0.1, shift=0.05, brightness=0.1, contrast=0.1,
                 hue=0.02, saturation=0.1):
    """The layers for the switched-on augmentations (empty: none). Rotation, zoom and shift
    fill with black, like the corners of the public set's copies; colour goes first so the
    fill stays black."""
    policy = []
    if brightness or contrast or hue or saturation:
        policy.append(RandomStain(brightness, contrast, hue, saturation))
    if rotate or flip or zoom or shift:
        policy.append(RandomGeometry(rotate, flip, zoom, shift))
    return policy


def policy_from_config(config):
    return build_policy(config.rotate, config.flip, config.zoom, config.shift, config.brightness,
                        config.contrast, config.hue, config.saturation)


def apply_policy(policy, images: np.ndarray, seed: int) -> np.ndarray:
    """Augment a ``(B, H, W, 3)`` batch; returns float32 in [0, 255]."""
    if not policy:
        return images.astype(np.float32)
    # cast as a tensor op, and clip the result in place: a numpy astype before and a clip
    # plus astype after were three full copies, ~15 % of a 32 x 240 x 320 batch's time
    # (benchmarks/README.md)
    x = ops.cast(ops.convert_to_tensor(images), "float32")
    for k, layer in enumerate(policy):
        t = layer.get_random_transformation(x, training=True, seed=(int(seed) * 31 + k) % (2**31 - 1))
        x = layer.transform_images(x, t, training=True)
    out = np.asarray(ops.convert_to_numpy(x), dtype=np.float32)
    return np.clip(out, 0, 255, out=out) if out.flags.writeable else np.clip(out, 0, 255)


def batch_seed(seed, epoch, index):
    """A 31-bit seed unique to (run seed, epoch, batch)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0] >> 1)
