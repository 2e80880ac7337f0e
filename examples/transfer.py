"""The transfer loop: the shipped PBC classifier as it is, then fine-tuned on your cells.

    python examples/transfer.py [--smoke] [--images FOLDER]

1. `pbc` (weights leukonet ships: a CNN trained on 12,195 PBC cells, CellaVision DM96,
   May-Grünwald-Giemsa) predicts a differential count, no training needed.
2. Its backbone, under a new head for your classes, is fine-tuned on your labelled cells
   (here the SYNTHETIC demo set; point the manifests at your own).
3. The fine-tuned run is evaluated on held-out families and predicts a differential count.

The same from the shell:

    leukonet predict pbc smear_crops/ -o counts.csv
    leukonet fit --manifest train.csv --val-manifest val.csv --data-root cells/ \\
        --backbone simple_cnn_wide --weights pbc --preset blood-cells-cpu --run-dir runs/mine
    leukonet evaluate runs/mine --manifest test.csv --data-root cells/
    leukonet predict runs/mine smear_crops/ -o counts.csv
"""
from pathlib import Path

import leukonet
from _common import demo_manifests, parser
from leukonet.evaluate.predict import differential_count


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", help="a folder of single-cell crops to count (default: the demo "
                   "test images)")
    args = p.parse_args()
    paths, root = demo_manifests(args.workdir, args.smoke)
    images = args.images or str(root / "TEST")

    shipped = leukonet.load_run("pbc")  # 1. as it is: 8 PBC classes
    table = shipped.predict(images=[images])
    print("PBC classifier, as shipped:")
    print(differential_count(table, shipped.classes).to_string())

    options = dict(backbone="simple_cnn_wide", weights="pbc", head="gap",  # 2. fine-tune
                   image_size=[30, 40] if args.smoke else [96, 96], epochs=1 if args.smoke else 12,
                   batch_size=8 if args.smoke else 32, lr=2e-3, lr_schedule="cosine", workers=1)
    run = leukonet.fit(manifest=str(paths["train"]), val_manifest=str(paths["val"]),
                       data_root=str(root), run_dir=str(Path(args.workdir) / "runs" / "from-pbc"),
                       overwrite=True, **options)
    ev = run.evaluate(paths["test"], root, figures=False)  # 3. held-out families
    low, high = ev.metrics["by_family"]["accuracy_ci95_over_families"]
    print(f"fine-tuned from pbc: test accuracy {ev.metrics['accuracy']:.4f} "
          f"(95 % interval over families {low:.4f}-{high:.4f}; SYNTHETIC demo data)")
    print(differential_count(run.predict(images=[images]), run.classes).to_string())


if __name__ == "__main__":
    main()
