"""Benchmark: training steps/s of leukonet's streaming fit against in-memory numpy arrays.

    python benchmarks/fit_overhead.py [--quick]

Same model, same batches, same process: (a) keras ``model.fit`` on numpy arrays already
in memory (the ceiling), (b) ``model.fit`` on leukonet's ManifestLoader reading the files
from disk (no augmentation, 2 threads). Models: simple_cnn at 96x128 and resnet50 at
64x64 (weights none). Uses the SYNTHETIC demo data. Median of --repeats epochs after a
warm-up epoch. Writes benchmarks/results/fit_overhead.json.
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    import keras  # noqa: F401  (imported before anything is timed)

    from leukonet.config import FitConfig
    from leukonet.data.demo import make_demo_data
    from leukonet.data.loader import ManifestLoader
    from leukonet.data.manifest import Manifest
    from leukonet.models.build import build_model

    repeats = 1 if args.quick else args.repeats
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = make_demo_data(Path(tmp) / "demo", sources_per_class=(6, 2) if args.quick else (24, 6))
        frame = Manifest.from_folder(root).frame
        models = [("simple_cnn", (96, 128))] + ([] if args.quick else [("resnet50", (64, 64))])
        for backbone, size in models:
            loader = ManifestLoader(frame, root, size, 32, num_classes=4, workers=2)
            x = np.concatenate([loader[i][0] for i in range(len(loader))])
            y = np.concatenate([loader[i][1] for i in range(len(loader))])
            model = build_model(FitConfig(backbone=backbone, head="gap", weights="none"), 4, size)
            model.compile(optimizer="adam", loss="categorical_crossentropy")
            timings = {}
            for name, fit in (("in-memory arrays", lambda: model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=True)),
                              ("leukonet loader", lambda: model.fit(loader, epochs=1, verbose=0))):
                fit()  # warm-up: tracing, caches
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    fit()
                    times.append(time.perf_counter() - start)
                timings[name] = len(loader) / statistics.median(times)
            rows.append(dict(model=backbone, size=f"{size[0]}x{size[1]}", images=len(frame),
                             steps_per_s_arrays=round(timings["in-memory arrays"], 2),
                             steps_per_s_loader=round(timings["leukonet loader"], 2),
                             ratio=round(timings["leukonet loader"] / timings["in-memory arrays"], 3)))
            print(rows[-1], flush=True)
    if not args.quick:
        from leukonet import io

        io.write_json(HERE / "results" / "fit_overhead.json",
                      dict(machine=f"{os.cpu_count()} CPUs", rows=rows, date=time.strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
