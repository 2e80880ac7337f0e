"""Soak: fit -> evaluate -> predict, many times in one process; memory and open files
at the start and the end must stay flat.

    python benchmarks/soak.py [--iterations 200] [--quick]

Uses a tiny SYNTHETIC demo set (30x40 images, one epoch per fit). Prints resident memory
(RSS) and open file descriptors after the first and every 10th iteration, and writes
benchmarks/results/soak.json.
"""
import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _open_files():
    return len(os.listdir("/proc/self/fd"))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="3 iterations")
    args = p.parse_args()
    import leukonet
    from leukonet.data.demo import make_demo_data
    from leukonet.data.manifest import Manifest

    n = 3 if args.quick else args.iterations
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = make_demo_data(tmp / "data", sources_per_class=(6, 2), copies_per_source=3, image_size=(30, 40))
        m = Manifest.from_folder(root).dedup().group()
        for name, part in m.split(val=0.25, seed=0).items():
            part.to_csv(tmp / f"{name}.csv", overwrite=True, rejects=False)
        start = time.perf_counter()
        for i in range(n):
            run = leukonet.fit(manifest=str(tmp / "train.csv"), val_manifest=str(tmp / "val.csv"),
                               data_root=str(root), backbone="simple_cnn", head="gap", weights="none",
                               image_size=[30, 40], epochs=1, batch_size=16, workers=1,
                               run_dir=str(tmp / "run"), overwrite=True, verbose=0)
            run.evaluate(tmp / "test.csv", root, figures=(i % 10 == 0))
            run.predict(images=[root / "TEST"])
            del run
            gc.collect()
            if i == 0 or (i + 1) % 10 == 0 or i == n - 1:
                samples.append(dict(iteration=i + 1, rss_mib=round(_rss_mib(), 1), open_files=_open_files(),
                                    seconds=round(time.perf_counter() - start, 1)))
                print(samples[-1], flush=True)
    first, last = samples[0], samples[-1]
    print(f"RSS {first['rss_mib']} -> {last['rss_mib']} MiB, open files {first['open_files']} -> "
          f"{last['open_files']} over {n} iterations")
    if not args.quick:
        from leukonet import io

        io.write_json(HERE / "results" / "soak.json", dict(machine=f"{os.cpu_count()} CPUs", iterations=n,
                                                            samples=samples, date=time.strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
