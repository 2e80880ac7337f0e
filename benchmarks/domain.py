"""The out-of-domain check, measured: does a model flag another lab's cells, and pass its own?

    python benchmarks/domain.py --bc-run runs/bc [--ship]

Two models, two data sets from two labs:
- the shipped ``pbc`` classifier (PBC: CellaVision DM96, May-Grünwald-Giemsa, Barcelona),
  described on PBC's TRAIN/val split (``--ship`` writes that description into the package);
- a blood-cells model (``--bc-run``: a run trained on data_manifests/blood-cells, e.g. the
  transfer benchmark's fine-tuned cell), described on its own train/val manifests.
Each is scored on its own lab's test split and on the other lab's, with two scores:
Mahalanobis distance of the penultimate features to the nearest class mean (leukonet's
check, ``leukonet.evaluate.domain``) and the maximum softmax probability (MSP, the usual
baseline), each thresholded to pass 95 % of the model's own validation images. Writes
benchmarks/results/domain.json and prints the table domain.md quotes.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results" / "domain.json"
PBC_MANIFESTS = REPO / "data_manifests" / "pbc"
BC_MANIFESTS = REPO / "data_manifests" / "blood-cells"


def auroc(in_scores, out_scores):
    """How well a score (higher: more unusual) separates the two sets."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return float(roc_auc_score(y, np.r_[in_scores, out_scores]))


def measure(name, run, val, tests, root_of):
    """One model: thresholds from ``val``; flags and accuracies on each test set."""
    domain = run.domain
    from leukonet.evaluate.domain import outputs_of

    _, val_p, _ = outputs_of(run, val, root_of["own"], workers=2)
    msp_threshold = float(np.quantile(val_p.max(axis=1), 0.05))  # 95 % of validation pass
    classes = {c.lower(): i for i, c in enumerate(run.classes)}
    rows, scored = [], {}
    for test_name, (frame, root) in tests.items():
        kept, p, f = outputs_of(run, frame, root, workers=2)
        maha, maha_flag = domain.flag(f)
        msp = p.max(axis=1)
        msp_flag = msp < msp_threshold
        labels = frame["label"].str.lower().to_numpy()[kept]
        known = np.array([lab in classes for lab in labels])
        truth = np.array([classes.get(lab, -1) for lab in labels])
        correct = p.argmax(axis=1) == truth

        def acc(mask):
            m = mask & known
            return float(correct[m].mean()) if m.any() else None
        scored[test_name] = (maha, -msp)
        rows.append(dict(
            model=name, test=test_name, images=int(len(kept)), known_class_images=int(known.sum()),
            accuracy=acc(np.ones_like(known)),
            flagged_mahalanobis=float(maha_flag.mean()), flagged_msp=float(msp_flag.mean()),
            accuracy_passing_mahalanobis=acc(~maha_flag), accuracy_flagged_mahalanobis=acc(maha_flag),
            accuracy_passing_msp=acc(~msp_flag), accuracy_flagged_msp=acc(msp_flag),
            median_confidence=float(np.median(msp)),
            confident_wrong_share=float(((msp >= 0.6) & ~correct & known).sum() / max(1, known.sum()))))
    own, other = list(tests)
    for r in rows:
        r["auroc_mahalanobis"] = auroc(scored[own][0], scored[other][0])
        r["auroc_msp"] = auroc(scored[own][1], scored[other][1])
    return rows, dict(threshold_mahalanobis=domain.threshold, threshold_msp=msp_threshold,
                      description=domain.info)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pbc-root", default=str(REPO.parent / "pbc"))
    ap.add_argument("--bc-root", default=str(REPO.parent / "shared" / "datasets" / "blood-cells" / "images"))
    ap.add_argument("--bc-run", required=True, help="a run trained on data_manifests/blood-cells")
    ap.add_argument("--ship", action="store_true",
                    help="(re)compute the shipped pbc description and write it into the package")
    args = ap.parse_args(argv)
    from leukonet.train.run import Run

    for root in (args.pbc_root, args.bc_root):
        if not Path(root).is_dir():
            sys.exit(f"{root}: not found (see ../shared/datasets/README.md)")
    start = time.perf_counter()
    pbc = Run("pbc")
    if args.ship or pbc.domain is None:
        d = pbc.calibrate(args.pbc_root, PBC_MANIFESTS / "train.csv", PBC_MANIFESTS / "val.csv")
        print(f"pbc: described {d.info['train_images']} PBC TRAIN images, threshold {d.threshold:.2f}")
    bc = Run(args.bc_run)
    if bc.domain is None:
        d = bc.calibrate(args.bc_root)
        print(f"{args.bc_run}: described {d.info['train_images']} images, threshold {d.threshold:.2f}")

    def read(csv):
        return pd.read_csv(csv, dtype={"path": str, "label": str}, keep_default_na=False)[["path", "label"]]

    pbc_test, bc_test = read(PBC_MANIFESTS / "test.csv"), read(BC_MANIFESTS / "test.csv")
    rows_a, info_a = measure("pbc (shipped)", pbc, read(PBC_MANIFESTS / "val.csv"),
                             {"PBC test": (pbc_test, args.pbc_root),
                              "blood-cells TEST": (bc_test, args.bc_root)},
                             {"own": args.pbc_root})
    rows_b, info_b = measure("blood-cells run", bc, read(Path(args.bc_run) / "val_manifest.csv"),
                             {"blood-cells TEST": (bc_test, args.bc_root),
                              "PBC test": (pbc_test, args.pbc_root)},
                             {"own": args.bc_root})
    table = pd.DataFrame(rows_a + rows_b)
    result = dict(rows=table.to_dict("records"), pbc=info_a, bc_run=dict(info_b, path=args.bc_run),
                  seconds=round(time.perf_counter() - start, 1),
                  machine="2 CPU cores, no GPU", date=time.strftime("%Y-%m-%d"),
                  command="python benchmarks/domain.py " + " ".join(argv or sys.argv[1:]))
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    show = table[["model", "test", "images", "accuracy", "flagged_mahalanobis", "flagged_msp",
                  "accuracy_passing_mahalanobis", "accuracy_flagged_mahalanobis",
                  "auroc_mahalanobis", "auroc_msp", "confident_wrong_share"]]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(show.round(4).to_string(index=False))
    print(f"wrote {RESULTS.relative_to(REPO)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
