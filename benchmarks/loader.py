"""Benchmark: images/s of leukonet's loader against the Keras baselines, same files.

    python benchmarks/loader.py [--root .../blood-cells/images/TRAIN] [--quick]

Rows: leukonet ManifestLoader (threads, JPEG draft decoding; with and without
augmentation -- its fused layers with OpenCV kernels (the default), with their keras.ops
kernels, and the stock Keras layers for comparison; with
--cache-dir cold then warm, a fresh cache each repeat; with Pillow as its JPEG decoder
instead of simplejpeg); keras.utils.image_dataset_from_directory (tf.data; with the stock
Keras augmentation layers mapped over it); tf.keras ImageDataGenerator.flow_from_dataframe
(what the published Keras work used; with its own rotation/zoom/shift/flip/brightness/
channel-shift augmentation); and tight decode+resize loops with the same threads: one
pool.map per batch with Pillow and with simplejpeg, and whole batches per thread with
simplejpeg decoding into the batch (the fastest of the three is the ceiling). Each is run --repeats times, round
robin over the cases (a slow spell of the host hits every case); the median is reported.
Writes benchmarks/results/loader.json.
Not a test: nothing here asserts a time.
"""
import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parent.parent / "shared" / "datasets" / "blood-cells" / "images" / "TRAIN"


def _frame(root, limit):
    rows = [dict(path=p.relative_to(root).as_posix(), label=p.parent.name)
            for p in sorted(root.glob("*/*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    frame = pd.DataFrame(rows)
    if limit:
        frame = frame.groupby("label", group_keys=False).head(limit // frame["label"].nunique())
    classes = sorted(frame["label"].unique())
    frame["label_index"] = frame["label"].map(classes.index)
    return frame.reset_index(drop=True)


def keras_layers_policy():
    """leukonet's default augmentation as the stock Keras layers, one after another (what
    leukonet used before its fused layers; also what a Keras user maps over tf.data)."""
    from keras import layers

    fill = dict(fill_mode="constant", fill_value=0.0)
    lo, hi = 0.9 / 1.9, 1.1 / 2.1  # RandomSaturation's scale for +-10 %
    return [layers.RandomBrightness(0.1, value_range=(0, 255)),
            layers.RandomContrast(0.1, value_range=(0, 255)),
            layers.RandomHue(0.02, value_range=(0, 255)),
            layers.RandomSaturation((lo, hi), value_range=(0, 255)),
            layers.RandomRotation(0.5, **fill), layers.RandomFlip("horizontal_and_vertical"),
            layers.RandomZoom((-0.1, 0.1), **fill), layers.RandomTranslation((-0.05, 0.05), (-0.05, 0.05), **fill)]


def leukonet_loader(frame, root, size, batch, workers, augment=False, cache_dir=None,
                    decoder=None):
    from leukonet.data import fused_augment, images
    from leukonet.data.augment import build_policy
    from leukonet.data.loader import ManifestLoader

    # only the policy asked for: building the stock Keras layers costs ~10 ms, 7 % of an
    # unaugmented pass over 1,000 images
    policy = {False: lambda: None, True: build_policy, "ops": build_policy,
              "keras": keras_layers_policy}[augment]()
    loader = ManifestLoader(frame.assign(sha1=frame["path"]), root, size, batch, shuffle=True,
                            policy=policy, workers=workers, cache_dir=cache_dir)
    default, images.JPEG_DECODER = images.JPEG_DECODER, decoder or images.JPEG_DECODER
    cv2 = fused_augment.cv2
    if augment == "ops":  # the fused layers' keras.ops kernels (what runs without OpenCV)
        fused_augment.cv2 = None
    try:
        # What Keras' PyDataset enqueuer does with `workers` threads.
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(loader.__getitem__, range(len(loader))):
                pass
    finally:
        images.JPEG_DECODER = default
        fused_augment.cv2 = cv2


def tight_loop(frame, root, size, batch, workers, decoder="pillow"):
    from PIL import Image

    def one(rel):
        if decoder == "simplejpeg":  # half/quarter/eighth scale when that still covers size
            import simplejpeg

            img = Image.fromarray(simplejpeg.decode_jpeg((root / rel).read_bytes(), colorspace="RGB",
                                                         min_height=size[0], min_width=size[1]))
        else:
            img = Image.open(root / rel)
            img.draft("RGB", (size[1], size[0]))
            img = img.convert("RGB")
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(img)

    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(frame), batch):
            np.stack(list(pool.map(one, frame["path"][start:start + batch])))


def tight_batches(frame, root, size, batch, workers):
    """The least work a batch can take: each thread fills whole batches (as the loader's
    threads do), simplejpeg decoding each JPEG straight into the batch; a resize only where
    the scaled decode misses the size. No checks, no EXIF, no labels."""
    import simplejpeg
    from PIL import Image

    paths = [str(root / p) for p in frame["path"]]

    def fill(start):
        part = paths[start:start + batch]
        out = np.empty((len(part), size[0], size[1], 3), np.uint8)
        for k, path in enumerate(part):
            with open(path, "rb") as f:
                data = f.read()
            scaled = dict(colorspace="RGB", min_height=size[0], min_width=size[1])
            try:
                simplejpeg.decode_jpeg(data, buffer=out[k], **scaled)
            except ValueError:  # the scaled decode is larger than the batch slot
                img = Image.fromarray(simplejpeg.decode_jpeg(data, **scaled))
                out[k] = np.asarray(img.resize((size[1], size[0]), Image.BILINEAR))
        return out

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fill, range(0, len(paths), batch)):
            pass


def keras_directory(frame, root, size, batch, workers, tmp, augment=False):
    import keras
    import tensorflow as tf

    link = Path(tmp) / "tree"
    if not link.exists():  # the same files, through a tree holding only the sampled ones
        for rel in frame["path"]:
            (link / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(root / rel, link / rel)
    ds = keras.utils.image_dataset_from_directory(link, image_size=tuple(size), batch_size=batch,
                                                  shuffle=True, seed=0, verbose=False)
    if augment:
        aug = keras.Sequential(keras_layers_policy())
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    for _ in ds:
        pass


def image_data_generator(frame, root, size, batch, workers, augment=False):
    import tensorflow as tf

    aug = dict(rotation_range=180, zoom_range=0.1, width_shift_range=0.05, height_shift_range=0.05,
               horizontal_flip=True, vertical_flip=True, brightness_range=(0.9, 1.1),
               channel_shift_range=0.1 * 255, fill_mode="constant", cval=0.0)
    gen = tf.keras.preprocessing.image.ImageDataGenerator(**(aug if augment else {}))
    it = gen.flow_from_dataframe(frame.assign(filename=[str(root / p) for p in frame["path"]]),
                                 x_col="filename", y_col="label", target_size=tuple(size),
                                 batch_size=batch, shuffle=True, seed=0)
    for _ in range(len(it)):
        next(it)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(DEFAULT))
    p.add_argument("--quick", action="store_true", help="256 images, 1 repeat: checks the script runs")
    p.add_argument("--limit", type=int, default=0, help="images (0: all)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    root = Path(args.root)
    if not root.is_dir():
        raise SystemExit(f"{root}: not found; pass --root (the blood-cells TRAIN folder)")
    limit, repeats = (256, 1) if args.quick else (args.limit, args.repeats)
    frame = _frame(root, limit)
    import keras  # noqa: F401  (imported before timing: no timed pass pays for it)
    import tensorflow  # noqa: F401

    import leukonet.data.loader  # noqa: F401
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in ([240, 320], [120, 160]):
            cache = Path(tmp) / f"cache{size[0]}"
            cases = [
                ("tight decode+resize loop, Pillow", lambda r: tight_loop(frame, root, size, args.batch, args.workers)),
                ("tight decode+resize loop, simplejpeg", lambda r: tight_loop(frame, root, size, args.batch, args.workers, "simplejpeg")),
                ("tight loop, simplejpeg into the batch", lambda r: tight_batches(frame, root, size, args.batch, args.workers)),
                ("leukonet loader", lambda r: leukonet_loader(frame, root, size, args.batch, args.workers)),
                ("leukonet loader, Pillow decoder", lambda r: leukonet_loader(frame, root, size, args.batch, args.workers, decoder="pillow")),
                ("leukonet loader + augmentation", lambda r: leukonet_loader(frame, root, size, args.batch, args.workers, True)),
                ("leukonet loader + augmentation, keras.ops kernels", lambda r: leukonet_loader(frame, root, size, args.batch, args.workers, "ops")),
                ("keras image_dataset_from_directory", lambda r: keras_directory(frame, root, size, args.batch, args.workers, tmp)),
                ("tf.keras ImageDataGenerator", lambda r: image_data_generator(frame, root, size, args.batch, args.workers)),
                ("leukonet loader + augmentation, stock Keras layers", lambda r: leukonet_loader(frame, root, size, args.batch, args.workers, "keras")),
                ("image_dataset_from_directory + augmentation", lambda r: keras_directory(frame, root, size, args.batch, args.workers, tmp, True)),
                ("ImageDataGenerator + augmentation", lambda r: image_data_generator(frame, root, size, args.batch, args.workers, True)),
                # a fresh cache each repeat: the cold pass fills it, the warm pass reads it
                ("leukonet loader, cache cold", lambda r: leukonet_loader(frame, root, size, args.batch, args.workers, cache_dir=cache / str(r))),
                ("leukonet loader, cache warm", lambda r: leukonet_loader(frame, root, size, args.batch, args.workers, cache_dir=cache / str(r))),
            ]
            times = {name: [] for name, _ in cases}
            for repeat in range(repeats):  # round robin: a slow spell of the host hits every case
                for name, fn in cases:
                    start = time.perf_counter()
                    fn(repeat)
                    times[name].append(time.perf_counter() - start)
            for name, _ in cases:
                results.append(dict(size=f"{size[0]}x{size[1]}", loader=name, images=len(frame),
                                    images_per_s=round(len(frame) / statistics.median(times[name]), 1)))
                print(f"{results[-1]['size']:8} {name:40} {results[-1]['images_per_s']:8.1f} img/s", flush=True)
    table = pd.DataFrame(results)
    ratios = []
    for size, part in table.groupby("size"):
        speed = part.set_index("loader")["images_per_s"]
        ratios.append(dict(size=size,
                           vs_image_dataset_from_directory=round(speed["leukonet loader"] / speed["keras image_dataset_from_directory"], 2),
                           vs_ImageDataGenerator=round(speed["leukonet loader"] / speed["tf.keras ImageDataGenerator"], 2),
                           cache_warm_vs_image_dataset_from_directory=round(
                               speed["leukonet loader, cache warm"] / speed["keras image_dataset_from_directory"], 2),
                           cache_warm_vs_ImageDataGenerator=round(
                               speed["leukonet loader, cache warm"] / speed["tf.keras ImageDataGenerator"], 2),
                           share_of_ceiling=round(speed["leukonet loader"] / max(
                               speed["tight decode+resize loop, Pillow"], speed["tight decode+resize loop, simplejpeg"],
                               speed["tight loop, simplejpeg into the batch"]), 2),
                           simplejpeg_vs_pillow_decoder=round(speed["leukonet loader"] / speed["leukonet loader, Pillow decoder"], 2),
                           augmented_vs_image_dataset_from_directory=round(
                               speed["leukonet loader + augmentation"] / speed["image_dataset_from_directory + augmentation"], 2),
                           augmented_vs_ImageDataGenerator=round(
                               speed["leukonet loader + augmentation"] / speed["ImageDataGenerator + augmentation"], 2),
                           opencv_vs_keras_ops_kernels=round(
                               speed["leukonet loader + augmentation"] / speed["leukonet loader + augmentation, keras.ops kernels"], 2),
                           fused_vs_stock_keras_layers=round(
                               speed["leukonet loader + augmentation"] / speed["leukonet loader + augmentation, stock Keras layers"], 2)))
    print(pd.DataFrame(ratios).to_string(index=False))
    if not args.quick:
        from leukonet import io

        io.write_json(HERE / "results" / "loader.json", dict(
            machine=f"{os.cpu_count()} CPUs", workers=args.workers, batch=args.batch, repeats=repeats,
            rows=results, ratios=ratios, date=time.strftime("%Y-%m-%d")))
        print(f"wrote {HERE / 'results' / 'loader.json'}")


if __name__ == "__main__":
    main()
