"""Shared fixtures: small generated image trees, and the real data set when present."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BLOOD_CELLS = SHARED / "blood-cells" / "images"
# PBC (Acevedo et al. 2020) is too large for ../shared: ../pbc beside the checkout, or
# the folder LEUKONET_PBC names (data_manifests/pbc/README.md)
PBC = Path(os.environ.get("LEUKONET_PBC") or Path(__file__).resolve().parents[1].parent / "pbc")


def draw_source(rng, size=(48, 48)):
    """A random 'cell': a coloured background and blobs near the centre.

    Colours are drawn per source, so sources differ in colour histogram.
    """
    h, w = size
    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(60, 255, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        r = int(rng.integers(4, min(h, w) // 4))
        x, y = w // 2 + int(rng.integers(-w // 8, w // 8)), h // 2 + int(rng.integers(-h // 8, h // 8))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(40, 255, 3)))
    return img


def augment(img, rng):
    """An augmented copy: a quarter turn or flip plus a small rotation with black corners.

    Nearest-neighbour resampling keeps the flat colours flat. (Any-angle, interpolated
    rotations of real cells are tested on the blood-cells set; these tiny flat-colour
    images change their histogram too much under them.)
    """
    ops = [Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM, Image.ROTATE_90, Image.ROTATE_180,
           Image.ROTATE_270, Image.TRANSPOSE]
    out = img.transpose(ops[int(rng.integers(len(ops)))])
    return out.rotate(float(rng.uniform(-8, 8)), resample=Image.NEAREST, fillcolor=(0, 0, 0))


def write_tree(root, spec, copies=3, seed=0, split=None, fmt="png"):
    """``spec``: {label: n_sources}. Writes ROOT[/split]/<label>/s<k>_c<j>.<fmt>.

    Returns {path relative to root: (label, source id)}.
    """
    rng = np.random.default_rng(seed)
    truth = {}
    for label, n in spec.items():
        folder = Path(root, *([split] if split else []), label)
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(n):
            src = draw_source(rng)
            for j in range(copies):
                img = src if j == 0 else augment(src, rng)
                path = folder / f"s{seed}_{k}_c{j}.{fmt}"
                img.save(path)
                truth[path.relative_to(root).as_posix()] = (label, f"{label}/{k}/{seed}")
    return truth


def demo_split(folder, sources_per_class, copies_per_source, image_size=(30, 40)):
    """SYNTHETIC demo images in FOLDER/data and their group-aware 75/25 split as
    FOLDER/{train,val,test}.csv; returns (the grouped manifest, the data root)."""
    from leukonet.data.demo import make_demo_data
    from leukonet.data.manifest import Manifest

    root = make_demo_data(Path(folder) / "data", sources_per_class=sources_per_class,
                          copies_per_source=copies_per_source, image_size=image_size)
    m = Manifest.from_folder(root).dedup().group()
    for name, part in m.split(val=0.25, seed=0).items():
        part.to_csv(Path(folder) / f"{name}.csv", overwrite=True, rejects=False)
    return m, root


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(folder, data root) of the fit tests' ``demo_split``: 12 and 3 sources per class, 4
    copies each, made once per module. Modules that need other data override it (pytest
    takes a module's own fixture of the same name)."""
    base = tmp_path_factory.mktemp("demo")
    _, root = demo_split(base, (12, 3), 4)
    return base, root


def demo_fit_config(folder, root, **changes):
    """A FitConfig for a fast fit on ``demo_split``'s manifests in FOLDER: simple_cnn + gap
    at 30x40, no weights, 2 epochs, one loader thread; ``changes`` override it."""
    from leukonet.config import FitConfig

    return FitConfig(manifest=str(Path(folder) / "train.csv"), val_manifest=str(Path(folder) / "val.csv"),
                     data_root=str(root), image_size=[30, 40], batch_size=16, backbone="simple_cnn",
                     head="gap", weights="none", epochs=2, lr=3e-3, workers=1).replace(**changes)


@pytest.fixture
def tree(tmp_path):
    """A 3-class folder tree, 4 sources x 3 copies per class."""
    root = tmp_path / "data"
    truth = write_tree(root, {"EOSINOPHIL": 4, "LYMPHOCYTE": 4, "NEUTROPHIL": 4})
    return root, truth


@pytest.fixture
def blood_cells():
    if not BLOOD_CELLS.is_dir():
        pytest.skip("../shared/datasets/blood-cells is not here (a user's clone has none)")
    return BLOOD_CELLS


@pytest.fixture
def pbc():
    if not (PBC / "neutrophil").is_dir():
        pytest.skip(f"{PBC}: no PBC images here (a user's clone and CI have none); "
                    "data_manifests/pbc/README.md says how to get them")
    return PBC
