"""The published InceptionResNetV2 image-size x batch-size table, with test accuracy.

    python examples/reproduce_image_batch_ablation.py --data-root path/to/dataset2-master/images
    python examples/reproduce_image_batch_ablation.py --smoke

The published study trained InceptionResNetV2 (ImageNet weights, Conv head) at
(240,320)/20, (150,200)/50 and (90,120)/100 and reported the test accuracy of each: the
three cells taken in step (zip). Uses the shipped manifests in data_manifests/blood-cells.
Needs ImageNet weights (a GPU machine with internet, e.g. Colab); --smoke runs the same
code on SYNTHETIC demo data with simple_cnn.
"""
from pathlib import Path

from _common import demo_manifests, fit_options, parser
from leukonet.ablate import ablate, parse_grid, summarise
from leukonet.config import FitConfig

MANIFESTS = Path(__file__).resolve().parents[1] / "data_manifests" / "blood-cells"


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data-root", help="the blood-cells images/ folder")
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args()
    if args.smoke:
        paths, root = demo_manifests(args.workdir, True)
        base = FitConfig(manifest=str(paths["train"]), val_manifest=str(paths["val"]), data_root=str(root),
                         **fit_options(True))
        grid = parse_grid(["image_size=30x40,24x32", "batch_size=8,16"])
        test = paths["test"]
    else:
        if not args.data_root:
            p.error("--data-root is required (or --smoke)")
        base = FitConfig(manifest=str(MANIFESTS / "train.csv"), val_manifest=str(MANIFESTS / "val.csv"),
                         data_root=args.data_root, backbone="inception_resnet_v2", head="conv",
                         weights="imagenet", epochs=args.epochs, lr=1e-4)
        grid = parse_grid(["image_size=240x320,150x200,90x120", "batch_size=20,50,100"])
        test = MANIFESTS / "test.csv"
    table = ablate(base, grid, Path(args.workdir) / "image_batch_ablation", zip_axes=True,
                   test_manifest=test)
    print(summarise(table, list(grid)).to_string(index=False))


if __name__ == "__main__":
    main()
