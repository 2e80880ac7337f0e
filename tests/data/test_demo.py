import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukonet.data.demo import DEMO_CLASSES, make_demo_data
from leukonet.data.families import describe, group_features
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
            assert all(Image.open(f).size == (40, 30) for f in files)  # image_size is (h, w)
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    assert all(label.startswith("synthetic_") for label in DEMO_CLASSES)
    truth = pd.read_csv(root / "families.csv")
    assert list(truth.columns) == ["path", "label", "split", "source"]
    assert set(truth["path"]) == set(_hashes(root)) and len(truth) == 4 * 4 * 2
    assert (truth["path"].str.split("/").str[0] == truth["split"]).all()
    assert (truth["path"].str.split("/").str[1] == truth["label"]).all()
    assert truth.groupby("source")["label"].nunique().max() == 1
    assert truth.groupby("source")["split"].nunique().max() == 1
    assert truth.groupby("source").size().eq(2).all() and truth["source"].nunique() == 16


def test_deterministic_for_a_seed(tmp_path):
    a = _hashes(make_demo_data(tmp_path / "a", **SMALL))
    b = _hashes(make_demo_data(tmp_path / "b", **SMALL))
    c = _hashes(make_demo_data(tmp_path / "c", seed=1, **SMALL))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_idempotent_and_guarded(tmp_path):
    root = make_demo_data(tmp_path / "demo", **SMALL)
    png = next(root.rglob("*.png"))
    stamps = [(p.stat().st_mtime_ns, p.stat().st_ino) for p in (root / "demo.json", png)]
    make_demo_data(root, **SMALL)
    assert [(p.stat().st_mtime_ns, p.stat().st_ino) for p in (root / "demo.json", png)] == stamps
    before = _hashes(root)
    with pytest.raises(LeukonetError, match="other settings"):
        make_demo_data(root, seed=5, **SMALL)
    assert _hashes(root) == before  # refused: nothing touched
    make_demo_data(root, seed=5, overwrite=True, **SMALL)
    assert json.loads((root / "demo.json").read_text())["seed"] == 5
    assert _hashes(root) != before
    (root / "demo.json").write_text("{not json")  # a damaged stamp counts as other settings
    with pytest.raises(LeukonetError, match="other settings"):
        make_demo_data(root, **SMALL)

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("precious")
    for overwrite in (False, True):  # overwrite never deletes a folder that is not ours
        with pytest.raises(LeukonetError, match="not a leukonet demo folder"):
            make_demo_data(tmp_path / "mine", overwrite=overwrite, **SMALL)
    assert (tmp_path / "mine" / "thesis.docx").read_text() == "precious"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LeukonetError, match="not a folder"):
        make_demo_data(tmp_path / "afile", **SMALL)
    (tmp_path / "empty").mkdir()
    make_demo_data(tmp_path / "empty", **SMALL)  # an empty folder is fine
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("bad", [dict(sources_per_class=(3,)), dict(sources_per_class=(0, 0)),
                                 dict(copies_per_source=0), dict(image_size=(8, 8))])
def test_bad_settings_are_user_errors(tmp_path, bad):
    with pytest.raises(LeukonetError):
        make_demo_data(tmp_path / "demo", **{**SMALL, **bad})
    assert not (tmp_path / "demo").exists()


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory):
    root = make_demo_data(tmp_path_factory.mktemp("demo") / "demo")
    return root, pd.read_csv(root / "families.csv")


def _check_groups(groups, sources):
    """Purity (share of groups holding one source) >= 0.95, group count within 20 %."""
    per_group = pd.Series(np.asarray(sources)).groupby(np.asarray(groups)).nunique()
    assert (per_group == 1).mean() >= 0.95
    n = len(set(sources))
    assert 0.8 * n <= per_group.size <= 1.2 * n


def test_grouping_recovers_the_families(default_demo):
    root, truth = default_demo
    assert len(truth) == 4 * 30 * 5 and truth["source"].nunique() == 120
    features = [describe(np.asarray(Image.open(root / p).convert("RGB"))) for p in truth["path"]]
    _check_groups(group_features(features), truth["source"])
    # The same through the manifest, as `leukonet fit --demo` groups it.
    m = Manifest.from_folder(root).dedup().group()
    _check_groups(m.frame["group"], m.frame["path"].map(truth.set_index("path")["source"]))


def _radial_profile(rgb, rings=6):
    """Mean colour in rings around the centre: rotation- and flip-invariant, like the copies."""
    h, w = rgb.shape[:2]
    y, x = np.mgrid[:h, :w]
    ring = np.minimum((np.hypot(y - h / 2, x - w / 2) / (0.45 * h) * rings).astype(int), rings)
    return np.concatenate([rgb[ring == k].mean(axis=0) for k in range(rings)])


def test_classes_are_learnable(default_demo):
    """A nearest-centroid classifier on ring colour profiles separates the classes."""
    from sklearn.neighbors import NearestCentroid

    root, truth = default_demo
    x = np.array([_radial_profile(np.asarray(Image.open(root / p), np.float32))
                  for p in truth["path"]])
    train = (truth["split"] == "TRAIN").to_numpy()
    y = truth["label"].to_numpy()
    accuracy = (NearestCentroid().fit(x[train], y[train]).predict(x[~train]) == y[~train]).mean()
    assert accuracy > 0.8
