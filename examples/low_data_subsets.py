"""Low-data study (as WBC_100/50/10/1): nested, whole-family subsets of the training set.

    python examples/low_data_subsets.py [--smoke]

Each fraction is a stratified subset of whole families (the 1 % subset lies inside the
10 % one, inside the 50 % one), trained with the same options and tested on one test set.
"""
from pathlib import Path

from _common import demo_manifests, fit_options, parser
from leukonet.ablate import ablate, parse_grid, summarise
from leukonet.config import FitConfig


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    paths, root = demo_manifests(args.workdir, args.smoke)
    base = FitConfig(manifest=str(paths["train"]), val_manifest=str(paths["val"]), data_root=str(root),
                     **fit_options(args.smoke))
    fractions = "1.0,0.5" if args.smoke else "1.0,0.5,0.1,0.01"
    grid = parse_grid([f"fraction={fractions}"])
    table = ablate(base, grid, Path(args.workdir) / "low_data", test_manifest=paths["test"])
    print(summarise(table, list(grid)).to_string(index=False))


if __name__ == "__main__":
    main()
