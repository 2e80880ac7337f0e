"""Batches from a manifest, streamed from disk: a ``keras.utils.PyDataset``.

Memory holds only the batches in flight (``workers`` threads, a small queue), whatever
the data set size. No TensorFlow import: the same loader feeds the JAX and PyTorch
backends. An optional cache keeps decoded, resized pixels as raw files, so epochs after
the first skip JPEG decoding.
"""
import contextlib
import functools
import os
import threading
import zlib
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


def _read_cached(path, shape, out=None):
    """A cache entry as a uint8 array of ``shape`` (read into ``out`` when it fits), or None
    when it is missing or damaged (then the image is decoded again and the entry rewritten).

    An entry is the raw pixel bytes and their CRC-32, no header: the cache folder is named
    by the size. ``np.load`` parsed an ``.npy`` header per image and made a warm cache
    slower than decoding the JPEG; the checksum lets entries be written without an fsync
    each (which held the filling epoch to 432 img/s at 240x320, now ~1,100) and still
    catches a torn one (benchmarks/README.md)."""
    size = int(np.prod(shape))
    pixels = out if out is not None and out.shape == tuple(shape) and out.flags.c_contiguous \
        else np.empty(shape, np.uint8)
    try:
        with open(path, "rb") as f:
            got = f.readinto(memoryview(pixels).cast("B"))
            trailer = f.read(5)
    except OSError:  # FileNotFoundError the first time; unreadable: decode again
        return None
    if got != size or len(trailer) != 4 or zlib.crc32(pixels) != int.from_bytes(trailer, "little"):
        return None
    return pixels


def _write_cached(path, rgb):
    pixels = np.ascontiguousarray(rgb)
    with io.atomic_path(path, fsync=False) as tmp, open(tmp, "wb") as f:
        f.write(memoryview(pixels).cast("B"))
        f.write(zlib.crc32(pixels).to_bytes(4, "little"))


class ManifestLoader(keras.utils.PyDataset):
    """``(images, targets)`` batches: ``(B, H, W, 3)`` pixels in [0, 255] and one-hot labels
    (a dict of them for multi-task models). Pixels are float32 when augmented, else the
    decoded uint8: a Keras model casts its input in the graph, which is cheaper than a
    numpy ``astype`` of every batch (a fifth of the loader's time at 240x320).
    ``float_pixels`` makes them float32 always: MultiWorkerMirroredStrategy all-reduces the
    first batch and its collective op takes no uint8.

    ``shuffle`` reorders rows each epoch from (seed, epoch); ``policy`` (augmentation
    layers) is applied with a per-batch seed, so a run is repeatable. ``mixup`` > 0 then
    blends each batch with a permutation of itself, targets alike (training loaders only).
    """

    def __init__(self, frame, root, image_size, batch_size=32, num_classes=None, shuffle=False,
                 seed=0, policy=None, aux=None, cache_dir=None, skip_bad_images=False,
                 workers=2, max_queue_size=None, max_pixels=None,
                 nucleus_crop=0.0, float_pixels=False, mixup=0.0):
        # Keras keeps at most max_queue_size batches in flight: a fixed 4 would leave most of
        # 16 workers idle (measured: 6 of 16 busy), so twice the workers by default
        super().__init__(workers=workers, use_multiprocessing=False,
                         max_queue_size=max_queue_size or max(4, 2 * workers))
        self.paths = frame["path"].tolist()
        self.sha1 = frame["sha1"].tolist() if "sha1" in frame else [None] * len(frame)
        self.labels = frame["label_index"].to_numpy(dtype=np.int64)
        self.root = Path(root)
        for row, rel in enumerate(self.paths):
            scan.check_inside(rel, row + 2)  # refused now, not mid-epoch (row: the CSV line)
        # Joined once: a resolve (Path parse + stat) per image, under the GIL, cost the
        # two loader threads 15 % of their throughput (benchmarks/README.md).
        self._files = [os.path.join(self.root, rel) for rel in self.paths]
        self.image_size = tuple(int(v) for v in image_size)
        self.batch_size = int(batch_size)
        self.num_classes = int(num_classes or self.labels.max() + 1)
        self.shuffle, self.seed, self.policy = shuffle, int(seed), policy or []
        self.mixup = float(mixup or 0.0)  # MixUp's Beta alpha; 0: off
        self.aux = aux  # (name, aux index per row, number of aux classes) or None
        # >0: crop a square of this fraction of the short side around the nucleus first
        self.nucleus_crop = crop.check_fraction(nucleus_crop)
        size_key = "x".join(map(str, self.image_size))
        if self.nucleus_crop:
            size_key += f"-nucleus{self.nucleus_crop:g}"  # cropped pixels never mix with plain ones
        self.cache_dir = Path(cache_dir) / size_key if cache_dir else None
        self.skip_bad_images = skip_bad_images
        self.float_pixels = float_pixels  # float32 even unaugmented (collective all-reduce)
        if max_pixels is None:  # what the manifest's build accepted, at least the default
            area = (frame["width"] * frame["height"]).max() if {"width", "height"} <= set(frame) \
                else 0
            max_pixels = max(images.DEFAULT_MAX_PIXELS, int(area) if area == area else 0)
        self.max_pixels = max_pixels
        self.bad = {}  # path -> reason, for --skip-bad-images
        self.error = None  # the last error a batch raised (Keras' fit wraps it in its own)
        self._lock = threading.Lock()
        self.epoch = 0
        if len(self.paths) == 0:
            raise LeukonetError("no images to load")

    def __len__(self):
        return -(-len(self.paths) // self.batch_size)

    def on_epoch_end(self):
        self.epoch += 1  # the next epoch's order and augmentation seeds

    def load(self, i, out=None) -> np.ndarray:
        """Row ``i`` as a resized uint8 ``(H, W, 3)`` array (from the cache when there).
        ``out``: a slot of the batch that a JPEG already at the size is decoded into."""
        cached = None
        if self.cache_dir is not None and self.sha1[i]:
            cached = self.cache_dir / self.sha1[i][:2] / f"{self.sha1[i]}.rgb"
            rgb = _read_cached(cached, (*self.image_size, 3), out)
            if rgb is not None:
                return rgb
        if self.nucleus_crop:
            # no JPEG draft: the crop must come from full-resolution pixels
            rgb = crop.crop_nucleus(self._open(i), self.nucleus_crop)
        else:
            rgb = self._open(i, draft=self.image_size, out=out)
        rgb = images.resize_rgb(rgb, self.image_size)
        if cached is not None:
            _write_cached(cached, rgb)
        return rgb

    def _open(self, i, **kwargs):
        try:
            return images.open_rgb(self._files[i], self.max_pixels, **kwargs)
        except ImageError as e:
            # A non-UTF-8 file name is stored as Latin-1 in the manifest: resolve maps it back.
            alt = str(scan.resolve(self.root, self.paths[i]))
            if e.reason != "file not found" or alt == self._files[i]:
                raise
            self._files[i] = alt
            return images.open_rgb(alt, self.max_pixels, **kwargs)

    def load_batch(self, index):
        """``(pixels uint8 (B, H, W, 3), row numbers)`` of batch ``index``, unaugmented.

        Unreadable images raise, or with ``skip_bad_images`` are left out and listed in
        ``self.bad``.
        """
        order = epoch_order(len(self.paths), self.shuffle, self.seed, self.epoch)
        rows = order[index * self.batch_size:(index + 1) * self.batch_size]
        # Decoded straight into the batch where the JPEG allows: a per-image array and an
        # np.stack copy cost 0.29-0.33 instead of 0.24-0.26 ms per 240x320 image.
        x = np.empty((len(rows), *self.image_size, 3), np.uint8)
        keep = []
        for i in rows:
            slot = x[len(keep)]  # a bad image's slot is reused by the next one
            try:
                rgb = self.load(i, out=slot)
            except ImageError as e:
                if not self.skip_bad_images:
                    self.error = f"{e}; fix or remove the file, or pass --skip-bad-images"
                    raise LeukonetError(self.error) from None
                with self._lock:
                    self.bad[self.paths[i]] = e.reason
                continue
            if rgb is not slot:
                slot[...] = rgb
            keep.append(i)
        return x[:len(keep)], np.asarray(keep, dtype=int)

    def __getitem__(self, index):
        x, keep = self.load_batch(index)
        seed = augment.batch_seed(self.seed, self.epoch, index)
        if self.policy and len(x):
            x = augment.apply_policy(self.policy, x, seed)
        elif self.float_pixels or self.mixup:
            x = x.astype(np.float32)
        y = self._targets(keep)
        if self.mixup and len(x) > 1:
            x, y = augment.mix_up(x, y, self.mixup, seed)
        return x, y

    def _targets(self, rows):
        y = np.eye(self.num_classes, dtype=np.float32)[self.labels[rows]]
        if self.aux is None:
            return y
        name, aux_index, n_aux = self.aux
        return {"cell_type": y, name: np.eye(n_aux, dtype=np.float32)[aux_index[rows]]}


@contextlib.contextmanager
def loader_errors(*loaders):
    """Inside the block, a failure that a loader's batch caused is raised as that
    loader's one-line LeukonetError. Keras reads batches inside TensorFlow's ``PyFunc``
    (and JAX's callbacks), which turn it into a ~170-line traceback of their own."""
    try:
        yield
    except LeukonetError:
        raise
    except Exception:
        for loader in loaders:
            if loader is not None and getattr(loader, "error", None):
                raise LeukonetError(loader.error) from None
        raise
