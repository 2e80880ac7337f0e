"""PBC from scratch on a CPU: train one recipe on PBC's TRAIN/val split, score TEST, and
(`--ship`) write the model into the package as shipped weights with its model card.

    python benchmarks/pbc.py --pbc ../pbc                    # the shipped recipe (~70 min, 2 cores)
    python benchmarks/pbc.py --pbc ../pbc --attempt a2       # another attempt of pbc.md
    python benchmarks/pbc.py --pbc ../pbc --ship             # ... and write leukonet/weights/

A killed run resumes where it stopped (the same command). Prints the TEST line and writes
benchmarks/results/pbc.json (one entry per attempt). Selection is by validation only: the
fit keeps its best epoch by validation loss and TEST is scored once, after. Not a test.
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
MANIFESTS = REPO / "data_manifests" / "pbc"
RESULTS = HERE / "results" / "pbc.json"
SHIPPED_NAME = "simple_cnn_wide.pbc_v1"

# One CPU recipe for PBC's 12,195 TRAIN cells: the CPU backbone (simple_cnn_wide, 0.39 M
# parameters), 128x128, every orientation (cells have none), mild colour jitter, cosine
# schedule, label smoothing; only the cell crop and the epochs differ between attempts.
COMMON = ["--backbone", "simple_cnn_wide", "--head", "gap", "--weights", "none",
          "--image-size", "128x128", "--batch-size", "64", "--rotate", "180", "--zoom", "0.1",
          "--shift", "0.05", "--brightness", "0.15", "--contrast", "0.15", "--saturation",
          "0.15", "--hue", "0.02", "--lr", "2e-3", "--lr-schedule", "cosine",
          "--label-smoothing", "0.1", "--precise-bn", "20", "--stop-patience", "100",
          "--seed", "0", "--workers", "2"]
ATTEMPTS = {
    "a1": ["--nucleus-crop", "0", "--epochs", "40"],  # the whole 360x363 frame
    "a2": ["--nucleus-crop", "0.6", "--epochs", "30"],  # the cell at ~2x the scale
}
SHIPPED_ATTEMPT = "a2"

SCOPE = ("Trained on single-cell crops from one analyser (CellaVision DM96), May-Grünwald-"
         "Giemsa stain, healthy donors, 360x363 images {view} at {size}: other labs, stains "
         "and crops fine-tune first (`leukonet fit --weights pbc` on a few hundred labelled "
         "cells of their own).")
CITATION = ("Acevedo A, Merino A, Alférez S, Molina Á, Boldú L, Rodellar J. A dataset of "
            "microscopic peripheral blood cell images for development of automatic recognition "
            "systems. Data in Brief 30 (2020) 105474. doi:10.1016/j.dib.2020.105474; data: "
            "Mendeley Data doi:10.17632/snkd93bnjr.1")


def fit_command(attempt, pbc, run_dir):
    return ["leukonet", "fit", "--manifest", str(MANIFESTS / "train.csv"), "--val-manifest",
            str(MANIFESTS / "val.csv"), "--data-root", str(pbc), *COMMON, *ATTEMPTS[attempt],
            "--run-dir", str(run_dir)]


def shown(command):
    """The command as a user types it in the repository: its paths relative."""
    return " ".join(shlex.quote(c) for c in command).replace(str(REPO) + "/", "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pbc", default=str(REPO.parent / "pbc"),
                        help="the folder holding PBC's 8 class folders")
    parser.add_argument("--attempt", default=SHIPPED_ATTEMPT, choices=sorted(ATTEMPTS))
    parser.add_argument("--out", default="runs/pbc", help="run folders go here")
    parser.add_argument("--cache-dir", help="decoded-image cache (speeds up repeats)")
    parser.add_argument("--ship", action="store_true",
                        help=f"write the run into leukonet/weights/{SHIPPED_NAME}")
    args = parser.parse_args()
    pbc = Path(args.pbc).resolve()
    if not (pbc / "basophil").is_dir():
        sys.exit(f"{pbc}: PBC's class folders are not here (see data_manifests/pbc/README.md)")
    run_dir = Path(args.out).resolve() / args.attempt
    command = fit_command(args.attempt, pbc, run_dir)
    extra = ["--cache-dir", args.cache_dir] if args.cache_dir else []
    start = time.perf_counter()
    if not (run_dir / "metrics.json").is_file():
        resume = (run_dir / "config.json").is_file()
        todo = ["leukonet", "fit", "--resume", str(run_dir)] if resume else command + extra
        print(shown(todo))
        subprocess.run([sys.executable, "-m", "leukonet", *todo[1:]], check=True)
    subprocess.run([sys.executable, "-m", "leukonet", "evaluate", str(run_dir), "--manifest",
                    str(MANIFESTS / "test.csv"), "--data-root", str(pbc)], check=True)
    fit_metrics = json.loads((run_dir / "metrics.json").read_text())
    test = json.loads((run_dir / "eval" / "test" / "metrics.json").read_text())
    ci = test["by_family"]["accuracy_ci95_over_families"]
    typed = shown(fit_command(args.attempt, "../pbc", f"runs/pbc/{args.attempt}"))
    row = dict(attempt=args.attempt, date=time.strftime("%Y-%m-%d"), command=typed,
               test_accuracy=round(test["accuracy"], 4),
               test_balanced_accuracy=round(test["balanced_accuracy"], 4),
               test_ci95_over_families=[round(c, 4) for c in ci],
               val_accuracy=round(fit_metrics["val_accuracy"], 4),
               val_minus_test=round(fit_metrics["val_accuracy"] - test["accuracy"], 4),
               best_epoch=fit_metrics["best_epoch"], epochs=fit_metrics["epochs_run"],
               train_seconds=fit_metrics["train_seconds"],
               wall_seconds_this_call=round(time.perf_counter() - start))
    print(f"{args.attempt}: TEST accuracy {row['test_accuracy']:.4f} (95 % interval over families "
          f"{ci[0]:.4f}-{ci[1]:.4f}), balanced {row['test_balanced_accuracy']:.4f}; validation "
          f"{row['val_accuracy']:.4f}; fit {fit_metrics['train_seconds'] / 60:.1f} min")
    from leukonet import io

    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[args.attempt] = row
    io.write_json(RESULTS, results)
    print(f"wrote {RESULTS}")
    if args.ship:
        ship(run_dir, row, test)


def ship(run_dir, row, test):
    from leukonet.models import weights

    config = json.loads((run_dir / "config.json").read_text())
    classes = json.loads((run_dir / "classes.json").read_text())
    card = dict(
        backbone=config["backbone"], head=config["head"],
        description=("An 8-class white-blood-cell classifier trained from scratch on PBC "
                     "(Acevedo et al. 2020) by leukonet, and a backbone to fine-tune from."),
        scope=SCOPE.format(view=f"cropped around the nucleus ({config['nucleus_crop']:g})"
                           if config["nucleus_crop"] else "seen whole",
                           size="{}x{}".format(*config["image_size"])),
        image_size=config["image_size"], nucleus_crop=config["nucleus_crop"],
        preprocessing=("the loader " + (f"crops around the nucleus (--nucleus-crop "
                                         f"{config['nucleus_crop']:g}) and resizes"
                                         if config["nucleus_crop"] else "resizes the whole image")
                       + " to {}x{}; inside the model RGB 0-255 is scaled to [-1, 1]".format(
                           *config["image_size"])),
        classes=classes["classes"],
        recipe=f"{row['command']}\nleukonet evaluate runs/pbc/{row['attempt']} --manifest "
               "data_manifests/pbc/test.csv --data-root ../pbc",
        metrics={k: row[k] for k in ("test_accuracy", "test_ci95_over_families",
                                     "test_balanced_accuracy", "val_accuracy", "best_epoch",
                                     "train_seconds")} | {"test_images": test["images"]},
        data=dict(source="PBC, Mendeley Data doi:10.17632/snkd93bnjr.1 (17,092 images)",
                  manifests="data_manifests/pbc/ (split --val 0.15 --test 0.15 --seed 0)",
                  **{f"sha256 {n}.csv": weights.sha256(MANIFESTS / f"{n}.csv")
                     for n in ("manifest", "train", "val", "test")}),
        license=("weights: MIT like leukonet; trained on PBC, CC BY 4.0: attribute "
                 "Acevedo et al. 2020 when you use them"),
        citation=CITATION,
        usage=["leukonet predict pbc my_cells/ -o counts.csv     # a ready 8-class classifier",
               "leukonet fit --weights pbc --manifest train.csv --data-root my_cells  # fine-tune"],
        trained=row["date"], machine="2 CPU cores (no GPU)")
    paths = dict(manifest="data_manifests/pbc/train.csv", val_manifest="data_manifests/pbc/val.csv",
                 data_root="../pbc")
    digest = weights.write_folder(run_dir, SHIPPED_NAME, card, config_changes=paths)
    print(f"wrote {weights.FOLDER / SHIPPED_NAME}; record its sha256 in leukonet/models/weights.py:"
          f"\n{digest}")


if __name__ == "__main__":
    main()
