"""Shared by the examples: demo data and manifests, sized for --smoke or for real."""
import argparse
from pathlib import Path

from leukonet.data.demo import make_demo_data
from leukonet.data.manifest import Manifest


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true",
                   help="tiny SYNTHETIC demo data, tiny images, one epoch: checks the example runs")
    p.add_argument("--workdir", default="examples-output", help="where data and runs go")
    return p


def demo_manifests(workdir, smoke, seed=0, name="demo"):
    """SYNTHETIC demo data + group-aware train/val/test manifests: (paths dict, data root)."""
    workdir = Path(workdir)
    size = dict(sources_per_class=(6, 2), copies_per_source=3, image_size=(30, 40)) if smoke else {}
    root = make_demo_data(workdir / f"{name}-data", seed=seed, **size)
    out = workdir / f"{name}-manifests"
    paths = {n: out / f"{n}.csv" for n in ("train", "val", "test")}
    if not all(p.is_file() for p in paths.values()):
        m = Manifest.from_folder(root).dedup().group()
        for n, part in m.split(val=0.25, seed=0).items():
            part.to_csv(paths[n], overwrite=True, rejects=False)
    return paths, root


def fit_options(smoke):
    """simple_cnn from scratch: what trains on a CPU."""
    if smoke:
        return dict(backbone="simple_cnn", head="gap", weights="none", image_size=[30, 40],
                    epochs=1, batch_size=8, lr=3e-3, workers=1)
    return dict(backbone="simple_cnn", head="gap", weights="none", image_size=[60, 80],
                epochs=12, batch_size=32, lr=3e-3)
