"""Multi-task: the cell type plus mononuclear vs polymorphonuclear as a second output.

    python examples/multitask_nucleus.py [--smoke]

The second label comes from a mapping table in the config: lymphocytes and monocytes are
mononuclear; eosinophils and neutrophils polymorphonuclear (granulocytes).
"""
from pathlib import Path

import leukonet
from _common import demo_manifests, fit_options, parser
from leukonet.data.manifest import Manifest


def nucleus_map(classes):
    mono = ("lymphocyte", "monocyte")
    return {c: "mononuclear" if any(k in c.lower() for k in mono) else "polymorphonuclear" for c in classes}


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    paths, root = demo_manifests(args.workdir, args.smoke)
    classes = Manifest.read_csv(paths["train"]).classes
    multitask = {"name": "nucleus", "map": nucleus_map(classes), "loss_weight": 0.5}
    run = leukonet.fit(manifest=str(paths["train"]), val_manifest=str(paths["val"]), data_root=str(root),
                       run_dir=str(Path(args.workdir) / "runs" / "multitask"), overwrite=True,
                       multitask=multitask, **fit_options(args.smoke))
    ev = run.evaluate(paths["test"], root, figures=False)
    print(f"cell type accuracy {ev.metrics['accuracy']:.4f}, nucleus accuracy "
          f"{ev.metrics['nucleus']['accuracy']:.4f} (SYNTHETIC demo data)")


if __name__ == "__main__":
    main()
