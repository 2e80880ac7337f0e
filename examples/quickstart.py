"""The leukonet Python API end to end on the SYNTHETIC demo data.

    python examples/quickstart.py [--smoke]

manifest (dedup, families, leak-free split) -> fit -> evaluate -> predict (differential
count) -> Grad-CAM -> HTML report.
"""
from pathlib import Path

import leukonet
from _common import demo_manifests, fit_options, parser
from leukonet.evaluate.predict import differential_count


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    paths, root = demo_manifests(args.workdir, args.smoke)
    run = leukonet.fit(manifest=str(paths["train"]), val_manifest=str(paths["val"]),
                       data_root=str(root), run_dir=str(Path(args.workdir) / "runs" / "quickstart"),
                       overwrite=True, **fit_options(args.smoke))
    evaluation = run.evaluate(paths["test"], root, figures=True)
    print(evaluation.tables["per_class"].round(3))
    print(f"test accuracy {evaluation.metrics['accuracy']:.4f} (SYNTHETIC demo data)")
    table = run.predict(images=[root / "TEST"], min_confidence=0.5)
    print(differential_count(table, run.classes))
    run.explain(sorted((root / "TEST").rglob("*.png"))[:2], out_dir=Path(args.workdir) / "gradcam")
    from leukonet.evaluate.report import report

    print(f"report: {report(run)}")


if __name__ == "__main__":
    main()
