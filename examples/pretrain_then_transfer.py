"""Pretrain on data set A, then initialise the backbone from that run and train on B.

    python examples/pretrain_then_transfer.py [--smoke]

(As the CAM16 -> WBC study did.) Here A and B are two SYNTHETIC demo sets drawn with
different seeds; with real data, point the manifests at your two data sets.
"""
from pathlib import Path

import leukonet
from _common import demo_manifests, fit_options, parser


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    runs = Path(args.workdir) / "runs"
    a, root_a = demo_manifests(args.workdir, args.smoke, seed=0, name="set-a")
    b, root_b = demo_manifests(args.workdir, args.smoke, seed=1, name="set-b")
    options = fit_options(args.smoke)
    first = leukonet.fit(manifest=str(a["train"]), val_manifest=str(a["val"]), data_root=str(root_a),
                         run_dir=str(runs / "pretrain-a"), overwrite=True, **options)
    options.update(weights=str(first.path), head="conv")  # backbone from A, a new head
    second = leukonet.fit(manifest=str(b["train"]), val_manifest=str(b["val"]), data_root=str(root_b),
                          run_dir=str(runs / "transfer-b"), overwrite=True, **options)
    print(f"A: {first.metrics['val_accuracy']:.4f}  B (initialised from A): "
          f"{second.metrics['val_accuracy']:.4f} validation accuracy (SYNTHETIC demo data)")


if __name__ == "__main__":
    main()
