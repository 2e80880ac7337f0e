"""Transfer benchmark: blood-cells TEST accuracy from the shipped PBC weights against from
scratch, at 100 / 50 / 10 / 1 % of TRAIN (nested whole-family subsets).

One `leukonet ablate` (cells in step, `--zip`) runs every cell: for each (fraction, seed),
from scratch and three ways to transfer: fine-tune everything, two stages (head first,
then everything at a tenth of the learning rate) and a frozen backbone whose features
are cached. Then each transfer cell is paired with its from-scratch twin (same fraction
and seed) by `leukonet compare` over TEST's families. Prints a table, writes
benchmarks/results/transfer.json. Not a test.

    python benchmarks/transfer.py [--out runs/transfer] [--dry-run]
    python benchmarks/transfer.py --quick    # SYNTHETIC demo data, tiny: the CI smoke run
"""
import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IMAGES = REPO.parent / "shared" / "datasets" / "blood-cells" / "images"
MANIFESTS = REPO / "data_manifests" / "blood-cells"
# (fraction, seed): two seeds where the spread matters most, one elsewhere (issue 36)
ROWS = [(1.0, 0), (1.0, 1), (0.5, 0), (0.1, 0), (0.1, 1), (0.01, 0)]
# epochs per fraction: fewer images, more passes (10 at 100 %: ~10 min a cell on 2 cores)
EPOCHS = {1.0: 10, 0.5: 15, 0.1: 30, 0.01: 90}
MODES = {  # name: (weights, freeze_epochs, freeze_backbone, cache_features)
    "scratch": ("none", 0, False, False),
    "finetune": ("pbc", 0, False, False),
    "two-stage": ("pbc", None, False, False),  # None: a quarter of the epochs
    "frozen": ("pbc", 0, True, True),
}
# the CPU recipe (--preset blood-cells-cpu) on the PBC backbone's architecture
BASE = ["--preset", "blood-cells-cpu", "--backbone", "simple_cnn_wide", "--feature-views", "4"]


def cells(other_weights=()):
    """The table's cells; ``other_weights``: (label, weights) fine-tuned like "finetune"
    (another pretraining, e.g. with a different crop, against the shipped one)."""
    modes = dict(MODES, **{f"finetune:{label}": (w, 0, False, False) for label, w in other_weights})
    out = []
    for fraction, seed in ROWS:
        for mode, (weights, freeze, frozen, cached) in modes.items():
            epochs = EPOCHS[fraction]
            out.append(dict(mode=mode, fraction=fraction, seed=seed, weights=weights,
                            epochs=epochs, freeze_epochs=epochs // 4 if freeze is None else freeze,
                            freeze_backbone=frozen, cache_features=cached))
    return out


def ablate_command(table, out, train, val, test, root, extra=()):
    axes = ["fraction", "seed", "weights", "epochs", "freeze_epochs", "freeze_backbone",
            "cache_features"]
    grid = [f"--grid={a}=" + ",".join(str(c[a]).lower() if isinstance(c[a], bool) else f"{c[a]:g}"
                                      if isinstance(c[a], float) else str(c[a]) for c in table)
            for a in axes]
    return ["leukonet", "ablate", "--zip", *grid, "--out", str(out), "--manifest", str(train),
            "--val-manifest", str(val), "--data-root", str(root), "--test-manifest", str(test),
            *BASE, *extra]


def pair(table, out, test_name):
    """Each transfer cell against its from-scratch twin, paired over TEST's families."""
    import pandas as pd

    from leukonet.evaluate.compare import compare

    ablation = pd.read_csv(out / "ablation.csv")
    folders = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("cell"))
    rows = []
    for i, cell in enumerate(table):
        row = dict(cell)
        got = ablation[ablation["cell"] == i]
        if len(got):
            g = got.iloc[0]
            row.update(test_accuracy=g.get("test_accuracy"), val_accuracy=g.get("val_accuracy"),
                       train_seconds=g.get("train_seconds"), wall_seconds=g.get("wall_seconds"))
        metrics = folders[i] / "eval" / test_name / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            row["test_balanced_accuracy"] = m["balanced_accuracy"]
            row["test_ci95"] = m.get("by_family", {}).get("accuracy_ci95_over_families")
        if cell["mode"] != "scratch":
            twin = next((j for j, c in enumerate(table) if c["mode"] == "scratch"
                         and c["fraction"] == cell["fraction"] and c["seed"] == cell["seed"]), None)
            if twin is None:
                rows.append(row)
                continue
            try:
                r = compare(folders[i], folders[twin], eval_name=test_name)
                row.update(minus_scratch=r["difference"], minus_scratch_ci95=r["difference_ci95"])
            except Exception as e:  # noqa: BLE001 - a failed cell: reported, not fatal
                row["minus_scratch"] = f"n/a ({e})"
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--dry-run", action="store_true", help="print the command and stop")
    parser.add_argument("--rows", help="only these fraction:seed rows, e.g. 1:0,0.1:0 (a part "
                        "of the table when the hours for all of it are not there)")
    parser.add_argument("--modes", help="only these modes, e.g. scratch,finetune")
    parser.add_argument("--other-weights", action="append", default=[], metavar="LABEL=WEIGHTS",
                        help="also fine-tune from these weights (a run folder or a name), "
                        "e.g. crop=runs/pbc/a2: does the pretraining recipe change the transfer?")
    parser.add_argument("--other-fractions", help="the --other-weights cells only at these "
                        "fractions, e.g. 0.1")
    parser.add_argument("--quick", action="store_true",
                        help="SYNTHETIC demo data at 30x40, one epoch per cell (a smoke run)")
    args = parser.parse_args()
    table = cells([tuple(o.split("=", 1)) for o in args.other_weights])
    extra = []
    if args.rows:
        keep = [(float(f), int(s)) for f, s in (r.split(":") for r in args.rows.split(","))]
        table = sorted((c for c in table if (c["fraction"], c["seed"]) in keep),  # in the order given
                       key=lambda c: keep.index((c["fraction"], c["seed"])))
    if args.other_fractions:
        at = {float(f) for f in args.other_fractions.split(",")}
        table = [c for c in table if ":" not in c["mode"] or c["fraction"] in at]
    if args.modes:
        table = [c for c in table if c["mode"] in args.modes.split(",")]
    if args.quick:
        sys.path.insert(0, str(REPO))
        from tests.conftest import demo_split

        work = Path(args.out)
        _, root = demo_split(work / "data", (8, 3), 3)
        train, val, test = (work / "data" / f"{n}.csv" for n in ("train", "val", "test"))
        table = [c for c in table if c["seed"] == 0 and c["fraction"] in (1.0, 0.5)]
        for c in table:
            c.update(epochs=2, freeze_epochs=1 if c["freeze_epochs"] else 0)
        extra = ["--image-size", "30x40", "--nucleus-crop", "0", "--batch-size", "16",
                 "--precise-bn", "0", "--workers", "1"]
    else:
        if not IMAGES.is_dir():
            sys.exit(f"{IMAGES}: the blood-cells images are not here")
        root = IMAGES
        train, val, test = (MANIFESTS / f"{n}.csv" for n in ("train", "val", "test"))
    out = Path(args.out) / "ablation"
    command = ablate_command(table, out, train, val, test, root, extra)
    print(" ".join(shlex.quote(c) for c in command))
    if args.dry_run:
        return
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "leukonet", *command[1:]], check=True)
    rows = pair(table, out, Path(test).stem)
    print(f"{'mode':10} {'fraction':>8} {'seed':>4} {'test':>7} {'val':>7} {'minus scratch (95 % CI)':>32}")
    for r in rows:
        diff = r.get("minus_scratch")
        ci = r.get("minus_scratch_ci95")
        text = (f"{100 * diff:+.2f} ({100 * ci[0]:+.2f} to {100 * ci[1]:+.2f})"
                if isinstance(diff, float) and ci else str(diff or ""))
        print(f"{r['mode']:10} {r['fraction']:8g} {r['seed']:4} {r.get('test_accuracy', float('nan')):7.4f} "
              f"{r.get('val_accuracy', float('nan')):7.4f} {text:>32}")
    if args.quick:
        return
    from leukonet import io

    # one file for the table, filled by parts (--rows): a cell measured again replaces
    # its earlier row; each part keeps its command and wall time
    path = HERE / "results" / "transfer.json"
    old = json.loads(path.read_text()) if path.is_file() else {"parts": [], "cells": []}
    if "parts" not in old:  # written before parts were kept (2026-12-05)
        old = {"parts": [{k: old[k] for k in ("date", "command", "wall_seconds")}
                         | {"cells": len(old["cells"])}], "cells": old["cells"]}
    key = lambda c: (c["mode"], c["fraction"], c["seed"])  # noqa: E731
    fresh = {key(r) for r in rows}
    old["parts"].append(dict(date=time.strftime("%Y-%m-%d"), command=" ".join(command),
                             wall_seconds=round(time.perf_counter() - start), cells=len(rows)))
    old["cells"] = [c for c in old["cells"] if key(c) not in fresh] + rows
    io.write_json(path, old)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
