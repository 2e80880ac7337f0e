"""Benchmark: one epoch of head-only training from cached features vs the frozen backbone.

    python benchmarks/feature_cache.py [--quick] [--backbone mobilenet_v2] [--size 96x128]
        [--head gap] [--scale 8]

(a) the full model with its backbone frozen, fed images every epoch (what --freeze-backbone
does); (b) --cache-features: backbone features computed once (timed separately), then
the head trained from the cache, as `leukonet fit` does it (float16 features, on TensorFlow
a tf.data feed that reads 16 batches per trip into Python, 16 steps per Keras call), then
fed the PyDataset itself, then one step per call. Same process, same data (SYNTHETIC demo
set), median of --repeats epochs after a warm-up. Writes benchmarks/results/feature_cache.json.
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _epoch_time(fit, repeats):
    fit()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--size", default="96x128")
    p.add_argument("--head", default="gap", help="conv | gap | dense")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scale", type=int, default=1,
                   help="data set size in units of 600 images (the cached epoch's fixed cost "
                        "matters less as the set grows)")
    args = p.parse_args()
    import keras

    from leukonet.config import FitConfig, parse_size
    from leukonet.data.demo import make_demo_data
    from leukonet.data.loader import ManifestLoader
    from leukonet.data.manifest import Manifest
    from leukonet.models.build import BACKBONE_LAYER, build_model
    from leukonet.train import features as F

    size = parse_size(args.size)
    repeats = 1 if args.quick else args.repeats
    config = FitConfig(backbone=args.backbone, head=args.head, weights="none")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_demo_data(Path(tmp) / "demo", sources_per_class=(6, 2) if args.quick else (24 * args.scale, 6 * args.scale))
        frame = Manifest.from_folder(root).frame
        loader = ManifestLoader(frame, root, size, 32, num_classes=4, workers=2)
        model = build_model(config, 4, size)
        model.get_layer(BACKBONE_LAYER).trainable = False
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        frozen = _epoch_time(lambda: model.fit(loader, epochs=1, verbose=0), repeats)
        start = time.perf_counter()
        paths = F.cache_features(F.feature_extractor(model), loader, Path(tmp) / "features", "train")
        caching = time.perf_counter() - start
        cached_loader = F.FeatureLoader(paths, loader._targets, len(frame), 32, shuffle=True)
        feature_shape = tuple(model.get_layer(BACKBONE_LAYER).output.shape[1:])
        # as `leukonet fit` trains the head (F.keras_input: a tf.data feed on TensorFlow,
        # several steps per Keras call), then fed the PyDataset itself, then one step per call
        sides = [(F.keras_input(cached_loader), F.STEPS_PER_EXECUTION),
                 (cached_loader, F.STEPS_PER_EXECUTION), (cached_loader, 1)]
        times = []
        for data, spe in sides:
            head = F.head_model(config, feature_shape, 4)
            head.compile(optimizer="adam", loss="categorical_crossentropy",
                         steps_per_execution=min(spe, len(cached_loader)))
            times.append(_epoch_time(lambda: head.fit(data, epochs=1, verbose=0), repeats))
        cached, pydataset, one_step = times
    row = dict(backbone=args.backbone, size=args.size, head=args.head, images=len(frame),
               repeats=repeats, frozen_backbone_epoch_s=round(frozen, 3),
               feature_caching_s=round(caching, 2), cached_head_epoch_s=round(cached, 4),
               speedup_per_epoch=round(frozen / cached, 1),
               cached_head_epoch_pydataset_s=round(pydataset, 4),
               cached_head_epoch_one_step_per_call_s=round(one_step, 4),
               backend=keras.backend.backend(), date=time.strftime("%Y-%m-%d"))
    print(row)
    if not args.quick:
        from leukonet import io

        path = HERE / "results" / "feature_cache.json"
        rows = [r for r in (json.loads(path.read_text())["rows"] if path.is_file() else [])
                if (r["backbone"], r["size"], r.get("head", "gap"), r["images"])
                != (row["backbone"], row["size"], row["head"], row["images"])]
        io.write_json(path, dict(machine=f"{os.cpu_count()} CPUs", rows=rows + [row], date=time.strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
