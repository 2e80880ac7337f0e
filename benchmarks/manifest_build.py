"""Benchmark: manifest build + dedup + grouping (+ keypoint links) on the blood-cells set.

Prints a table (stage, seconds, images/s), the families and the peak resident memory, and
writes benchmarks/results/manifest_build.json (manifest_build_<name>.json with --name).
Not a test: nothing here asserts a time.

    python benchmarks/manifest_build.py [--root ../shared/datasets/blood-cells/images]
    python benchmarks/manifest_build.py --root ../pbc --splits "" --no-keypoints --name pbc
"""
import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parent.parent / "shared" / "datasets" / "blood-cells" / "images"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(DEFAULT_ROOT))
    parser.add_argument("--splits", default="TRAIN,TEST")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--no-keypoints", action="store_true",
                        help="skip the keypoint-link stage (needs OpenCV)")
    parser.add_argument("--name", help="results file suffix (another data set)")
    args = parser.parse_args()
    if not Path(args.root).is_dir():
        sys.exit(f"{args.root}: not found; pass --root to the blood-cells images folder")

    from leukonet.data.manifest import Manifest

    rows = []
    t0 = time.perf_counter()
    m = Manifest.from_folder(args.root, splits=args.splits.split(",") if args.splits else None,
                             workers=args.workers)
    t1 = time.perf_counter()
    d = m.dedup()
    t2 = time.perf_counter()
    g = d.group()
    t3 = time.perf_counter()
    stages = [("scan + read + hash + describe", t1 - t0), ("dedup", t2 - t1),
              ("group (colour + keypoints)", t3 - t2)]
    sizes = g.frame["group"].value_counts()
    mixed = g.frame.groupby("group")["label"].transform("nunique") > 1
    families = {"verified links": int(g.frame["group"].nunique()),
                "largest": int(sizes.iloc[0]), "images in mixed-label families": int(mixed.sum())}
    links_note = next(n for n in g.notes if n.startswith("links:"))
    if not args.no_keypoints:
        linked = g.link_fields()  # what group(keypoints=True) runs after the histogram part
        t4 = time.perf_counter()
        stages.append(("keypoint links (SIFT, RANSAC)", t4 - t3))
        families["after keypoint links"] = int(linked.frame["group"].nunique())
        g = linked
    n = len(m)
    for stage, seconds in stages + [("total", sum(s for _, s in stages))]:
        rows.append(dict(stage=stage, seconds=round(seconds, 2), images_per_s=round(n / seconds, 1)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"{n} images, families {families}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    print(links_note)
    print(f"{'stage':32} {'seconds':>8} {'images/s':>10}")
    for r in rows:
        print(f"{r['stage']:32} {r['seconds']:8.2f} {r['images_per_s']:10.1f}")
    print(f"peak RSS: {peak_mb:.0f} MiB")
    out = HERE / "results" / f"manifest_build{'_' + args.name if args.name else ''}.json"
    from leukonet import io

    io.write_json(out, dict(images=n, families=families, links=links_note,
                            cpus=os.cpu_count(), stages=rows, peak_rss_mib=round(peak_mb),
                            root=str(args.root), date=time.strftime("%Y-%m-%d")))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
