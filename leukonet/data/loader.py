"""Batches from a manifest, streamed from disk: a ``keras.utils.PyDataset``.

Memory holds only the batches in flight (``workers`` threads, a small queue), whatever
the data set size. No TensorFlow import: the same loader feeds the JAX and PyTorch
backends. An optional cache keeps decoded, resized pixels as ``.npy`` files, so
epochs after the first skip JPEG decoding.
"""
import functools
import threading
from pathlib import Path

import keras
import numpy as np

from leukonet import io
from leukonet.data import augment, crop, images, scan
from leukonet.errors import ImageError, LeukonetError


@functools.lru_cache(maxsize=4)
def epoch_order(n, shuffle, seed, epoch):
    """Row order of ``epoch``: a permutation from (seed, epoch), or 0..n-1 unshuffled.
    Cached: every batch of an epoch asks for it (read-only, do not modify)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class ManifestLoader(keras.utils.PyDataset):
    """``(images, targets)`` batches: ``(B, H, W, 3)`` pixels in [0, 255] and one-hot labels
    (a dict of them for multi-task models). Pixels are float32 when augmented, else the
    decoded uint8: a Keras model casts its input in the graph, which is cheaper than a
    numpy ``astype`` of every batch (a fifth of the loader's time at 240x320).
    ``float_pixels`` makes them float32 always: MultiWorkerMirroredStrategy all-reduces the
    first batch and its collective op takes no uint8.

    ``shuffle`` reorders rows each epoch from (seed, epoch); ``policy`` (augmentation
    layers) is applied with a per-batch seed, so a run is repeatable.
    """

    def __init__(self, frame, root, image_size, batch_size=32, num_classes=None, shuffle=False,
                 seed=0, policy=None, aux=None, cache_dir=None, skip_bad_images=False,
                 workers=2, max_queue_size=4, max_pixels=images.DEFAULT_MAX_PIXELS,
                 nucleus_crop=0.0, float_pixels=False):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        self.paths = frame["path"].tolist()
        self.sha1 = frame["sha1"].tolist() if "sha1" in frame else [None] * len(frame)
        self.labels = frame["label_index"].to_numpy(dtype=np.int64)
        self.root = Path(root)
        self.image_size = tuple(int(v) for v in image_size)
        self.batch_size = int(batch_size)
        self.num_classes = int(num_classes or self.labels.max() + 1)
        self.shuffle, self.seed, self.policy = shuffle, int(seed), policy or []
        self.aux = aux  # (name, aux index per row, number of aux classes) or None
        # >0: crop a square of this fraction of the short side around the nucleus first
        self.nucleus_crop = crop.check_fraction(nucleus_crop)
        size_key = "x".join(map(str, self.image_size))
        if self.nucleus_crop:
            size_key += f"-nucleus{self.nucleus_crop:g}"  # cropped pixels never mix with plain ones
        self.cache_dir = Path(cache_dir) / size_key if cache_dir else None
        self.skip_bad_images = skip_bad_images
        self.float_pixels = float_pixels  # float32 even unaugmented (collective all-reduce)
        self.max_pixels = max_pixels
        self.bad = {}  # path -> reason, for --skip-bad-images
        self._lock = threading.Lock()
        self.epoch = 0
        if len(self.paths) == 0:
            raise LeukonetError("no images to load")

    def __len__(self):
        return -(-len(self.paths) // self.batch_size)

    def on_epoch_end(self):
        self.epoch += 1  # the next epoch's order and augmentation seeds

    def load(self, i) -> np.ndarray:
        """Row ``i`` as a resized uint8 ``(H, W, 3)`` array (from the cache when there)."""
        cached = None
        if self.cache_dir is not None and self.sha1[i]:
            cached = self.cache_dir / self.sha1[i][:2] / f"{self.sha1[i]}.npy"
            if cached.is_file():
                try:
                    return np.load(cached)
                except (OSError, ValueError):
                    pass  # a damaged cache entry: decode again and rewrite it
        path = scan.resolve(self.root, self.paths[i])
        if self.nucleus_crop:
            # no JPEG draft: the crop must come from full-resolution pixels
            rgb = crop.crop_nucleus(images.open_rgb(path, self.max_pixels), self.nucleus_crop)
        else:
            rgb = images.open_rgb(path, self.max_pixels, draft=self.image_size)
        rgb = images.resize_rgb(rgb, self.image_size)
        if cached is not None:
            with io.atomic_path(cached) as tmp:
                np.save(tmp, rgb)
        return rgb

    def load_batch(self, index):
        """``(pixels uint8 (B, H, W, 3), row numbers)`` of batch ``index``, unaugmented.

        Unreadable images raise, or with ``skip_bad_images`` are left out and listed in
        ``self.bad``.
        """
        order = epoch_order(len(self.paths), self.shuffle, self.seed, self.epoch)
        rows = order[index * self.batch_size:(index + 1) * self.batch_size]
        pixels, keep = [], []
        for i in rows:
            try:
                pixels.append(self.load(i))
                keep.append(i)
            except ImageError as e:
                if not self.skip_bad_images:
                    raise LeukonetError(f"{e}; fix or remove the file, or pass --skip-bad-images") from None
                with self._lock:
                    self.bad[self.paths[i]] = e.reason
        h, w = self.image_size
        x = np.stack(pixels) if pixels else np.zeros((0, h, w, 3), np.uint8)
        return x, np.asarray(keep, dtype=int)

    def __getitem__(self, index):
        x, keep = self.load_batch(index)
        if self.policy and len(x):
            x = augment.apply_policy(self.policy, x, augment.batch_seed(self.seed, self.epoch, index))
        elif self.float_pixels:
            x = x.astype(np.float32)
        return x, self._targets(keep)

    def _targets(self, rows):
        y = np.eye(self.num_classes, dtype=np.float32)[self.labels[rows]]
        if self.aux is None:
            return y
        name, aux_index, n_aux = self.aux
        return {"cell_type": y, name: np.eye(n_aux, dtype=np.float32)[aux_index[rows]]}
