import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukonet.data.demo import DEMO_CLASSES, make_demo_data
from leukonet.data.manifest import Manifest
from leukonet.errors import LeukonetError

SMALL = dict(sources_per_class=(3, 1), copies_per_source=2, image_size=(30, 40))


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.png"))}


def test_layout_counts_and_labels(tmp_path):
    root = make_demo_data(tmp_path / "demo", **SMALL)
    for split, n in (("TRAIN", 3 * 2), ("TEST", 1 * 2)):
        for label in DEMO_CLASSES:
            files = sorted((root / split / label).glob("*.png"))
            assert len(files) == n
            assert Image.open(files[0]).size == (40, 30)
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    assert all(label.startswith("synthetic_") for label in DEMO_CLASSES)
    truth = pd.read_csv(root / "families.csv")
    assert set(truth["path"]) == set(_hashes(root))
    assert truth.groupby("source")["label"].nunique().max() == 1


def test_deterministic_for_a_seed(tmp_path):
    a = _hashes(make_demo_data(tmp_path / "a", **SMALL))
    b = _hashes(make_demo_data(tmp_path / "b", **SMALL))
    c = _hashes(make_demo_data(tmp_path / "c", seed=1, **SMALL))
    assert a == b and a != c


def test_idempotent_and_guarded(tmp_path):
    root = make_demo_data(tmp_path / "demo", **SMALL)
    stamp = (root / "demo.json").stat().st_mtime_ns
    make_demo_data(root, **SMALL)
    assert (root / "demo.json").stat().st_mtime_ns == stamp
    with pytest.raises(LeukonetError, match="other settings"):
        make_demo_data(root, seed=5, **SMALL)
    make_demo_data(root, seed=5, overwrite=True, **SMALL)
    assert json.loads((root / "demo.json").read_text())["seed"] == 5
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    with pytest.raises(LeukonetError, match="not a leukonet demo folder"):
        make_demo_data(tmp_path / "mine", **SMALL)
    assert (tmp_path / "mine" / "thesis.docx").read_text() == "precious"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory):
    return make_demo_data(tmp_path_factory.mktemp("demo") / "demo")


def test_grouping_recovers_the_families(default_demo):
    m = Manifest.from_folder(default_demo).dedup().group()
    truth = pd.read_csv(default_demo / "families.csv").set_index("path")["source"]
    source = m.frame["path"].map(truth)
    purity = (m.frame.groupby("group").apply(lambda f: source[f.index].nunique() == 1,
                                              include_groups=False)).mean()
    n_sources = source.nunique()
    assert purity >= 0.95
    assert 0.8 * n_sources <= m.frame["group"].nunique() <= 1.2 * n_sources


def test_classes_are_learnable(default_demo):
    """A nearest-centroid classifier on 8x8 thumbnails separates the classes."""
    def load(split):
        xs, ys = [], []
        for i, label in enumerate(DEMO_CLASSES):
            for p in sorted((default_demo / split / label).glob("*.png")):
                xs.append(np.asarray(Image.open(p).resize((8, 8), Image.BOX), np.float32).ravel())
                ys.append(i)
        return np.array(xs), np.array(ys)

    from sklearn.neighbors import NearestCentroid

    (xt, yt), (xv, yv) = load("TRAIN"), load("TEST")
    accuracy = (NearestCentroid().fit(xt, yt).predict(xv) == yv).mean()
    assert accuracy > 0.8
