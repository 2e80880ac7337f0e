"""Augmentation policy from flags: preprocessing layers applied to uint8 batches.

The policy is at most two fused layers (``fused_augment``): colour/stain jitter, then
geometry, each one pass over the batch. Each batch gets its own seed (from the run seed,
the epoch and the batch index), passed to every layer's ``get_random_transformation``: the
same seed gives the same batch whatever the number of loader threads or the order they
finish in.
"""
import functools

import keras
import numpy as np
from keras import ops

from leukonet.data import fused_augment
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
    """Augment a ``(B, H, W, 3)`` batch; returns float32 in [0, 255]. Runs each layer's
    OpenCV ``transform_one`` (the loader's path, see ``fused_augment``) where every layer
    has one and OpenCV is installed, else the layers' ``keras.ops`` ``transform_images``:
    the same transformations from the same seeds, equal to 0.02 of a grey level."""
    if not policy:
        return images.astype(np.float32)
    seeds = [_layer_seed(seed, k) for k in range(len(policy))]
    if fused_augment.cv2 is not None and all(hasattr(layer, "transform_one") for layer in policy):
        return _apply_opencv(policy, images, seeds)
    return _apply_keras(policy, images, seeds)


def _apply_opencv(policy, images, seeds):
    _one_opencv_thread()
    transformations = [layer.get_random_transformation(images, training=True, seed=layer_seed)
                       for layer, layer_seed in zip(policy, seeds)]
    out = np.empty(images.shape, np.float32)
    scratch = [np.empty(images.shape[1:], np.float32) for _ in range(2)]
    for i in range(len(images)):
        # image by image through every layer, not layer by layer over the batch: one image
        # (0.9 MB at 240x320) stays in the CPU cache from one layer to the next, and no
        # batch-sized temporaries are faulted in; 2x faster per batch (benchmarks/README.md)
        image = np.ascontiguousarray(images[i], dtype=np.float32)  # the caller's batch is never written
        for k, (layer, t) in enumerate(zip(policy, transformations)):
            target = out[i] if k == len(policy) - 1 else scratch[k % 2]
            layer.transform_one(image, t, i, target)
            image = target
        np.clip(out[i], 0, 255, out=out[i])
    return out


_OPENCV_THREADS_SET = False


def _one_opencv_thread():
    """One OpenCV thread per call, set once per process, the first time a batch is
    augmented: the loader's own threads already fill the cores, and OpenCV's thread pool
    under two of them made each 32 x 240 x 320 batch 3x slower (54 against 18 ms; ad-hoc,
    benchmarks/README.md). This is process-wide: OpenCV code of yours in the same process
    runs single-threaded after it (``cv2.setNumThreads(n)`` undoes it)."""
    global _OPENCV_THREADS_SET
    if not _OPENCV_THREADS_SET:
        fused_augment.cv2.setNumThreads(1)
        _OPENCV_THREADS_SET = True


def _apply_keras(policy, images, seeds):
    # cast as a tensor op, and clip the result in place: a numpy astype before and a clip
    # plus astype after were three full copies, ~15 % of a 32 x 240 x 320 batch's time
    # (benchmarks/README.md)
    x = ops.cast(ops.convert_to_tensor(images), "float32")
    for layer, layer_seed in zip(policy, seeds):
        t = layer.get_random_transformation(x, training=True, seed=layer_seed)
        x = layer.transform_images(x, t, training=True)
    out = np.asarray(ops.convert_to_numpy(x), dtype=np.float32)
    return np.clip(out, 0, 255, out=out) if out.flags.writeable else np.clip(out, 0, 255)


def _layer_seed(seed, k):
    """The seed of the ``k``-th random layer run on a batch of seed ``seed``."""
    return (int(seed) * 31 + k) % (2**31 - 1)


def batch_seed(seed, epoch, index):
    """A 31-bit seed unique to (run seed, epoch, batch)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0] >> 1)


def mix_up(images: np.ndarray, targets, alpha: float, seed: int):
    """MixUp (Zhang et al. 2018) of a float32 batch with a permutation of itself, by
    ``keras.layers.MixUp``: one Beta(alpha, alpha) weight per image, the same weights and
    pairs for the images and every target (a dict of them for multi-task models)."""
    layer = _mixup_layer(float(alpha))
    # its own seed, not a policy layer's (at most 2): the pairs must not follow their draws
    t = layer.get_random_transformation({"images": images}, training=True, seed=_layer_seed(seed, 7))
    mixed = np.asarray(ops.convert_to_numpy(layer.transform_images(images, t)), np.float32)

    def mix(y):
        return np.asarray(ops.convert_to_numpy(layer.transform_labels(y, t)), np.float32)

    if isinstance(targets, dict):
        return mixed, {name: mix(y) for name, y in targets.items()}
    return mixed, mix(targets)


@functools.lru_cache(maxsize=8)
def _mixup_layer(alpha):
    # one per alpha, shared by the loader threads: with an explicit seed its draws are
    # stateless, and building a layer (and its seed variable) per batch cost more than the mix
    return keras.layers.MixUp(alpha=alpha)
