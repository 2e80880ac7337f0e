import shutil

from PIL import Image

from leukonet.data.audit import audit
from leukonet.data.manifest import Manifest
from tests.conftest import write_tree


def _two_sets(tmp_path):
    write_tree(tmp_path, {"A": 3, "B": 3}, copies=3, split="TRAIN", seed=1)
    write_tree(tmp_path, {"A": 2, "B": 2}, copies=2, split="TEST", seed=2)
    return tmp_path


def _parts(root):
    m = Manifest.from_folder(root).dedup().group()
    train = m._take(m.frame.index[m.frame["split"] == "TRAIN"])
    test = m._take(m.frame.index[m.frame["split"] == "TEST"])
    return train, test


def test_disjoint_sets_pass(tmp_path):
    train, test = _parts(_two_sets(tmp_path))
    report = audit(train, test, names=["train", "test"])
    assert report.across == dict(exact=0, near=0, shared_families=0)
    assert report.within["train"]["multi_families"] == 6
    assert report.within["train"]["near"] == 0  # every copy is inside its family
    # a copy taken out of its family is a near-duplicate pair across families
    train.frame.loc[train.frame.index[0], "group"] = 999
    assert audit(train, names=["train"]).within["train"]["near"] == 2
    assert report.verdict.startswith("OK: no link between train and test")
    assert "train" in str(report) and "families" in str(report)


def test_exact_and_near_links_across_are_found(tmp_path):
    root = _two_sets(tmp_path)
    src = sorted((root / "TRAIN" / "A").glob("*.png"))[0]
    shutil.copy(src, root / "TEST" / "A" / "exact.png")
    Image.open(src).transpose(Image.FLIP_LEFT_RIGHT).save(root / "TEST" / "A" / "flipped.png")
    m = Manifest.from_folder(root)  # no dedup: keep the exact copy to find it
    train = m._take(m.frame.index[m.frame["split"] == "TRAIN"])
    test = m._take(m.frame.index[m.frame["split"] == "TEST"])
    report = audit(train, test, names=["train", "test"])
    assert report.across["exact"] == 1
    assert report.across["near"] >= 2 * 3  # both copies link to the 3-member family
    assert report.leaks and report.verdict.startswith("LEAK")
    paths = {(a, b) for a, b, kind in report.examples if kind == "exact"}
    assert (src.relative_to(root).as_posix(), "TEST/A/exact.png") in paths


def test_without_images_shared_family_ids_are_links(tmp_path, monkeypatch):
    train, test = _parts(_two_sets(tmp_path))
    train.frame.loc[0, "group"] = test.frame["group"].iloc[0]
    train._features = test._features = None
    train.root = test.root = None
    report = audit(train, test, names=["a", "b"])
    assert report.across["near"] == -1 and report.across["shared_families"] == 1
    assert report.verdict.startswith("LEAK")


def test_check_lists_missing_changed_and_corrupt_files(tmp_path):
    root = tmp_path / "data"
    write_tree(root, {"A": 2, "B": 2}, copies=2)
    m = Manifest.from_folder(root).dedup().group()
    assert len(m.check(root)) == 0
    paths = sorted(m.frame["path"])
    (root / paths[0]).unlink()
    Image.new("RGB", (64, 48), (1, 2, 3)).save(root / paths[1])
    (root / paths[2]).write_bytes((root / paths[2]).read_bytes()[:50])
    m.frame.loc[m.frame.index[-1], "path"] = "../outside.png"
    problems = m.check(root).set_index("path")["problem"]
    assert problems[paths[0]] == "file not found"
    assert "sha1 mismatch" in problems[paths[1]]
    assert problems[paths[2]].startswith("truncated") or problems[paths[2]].startswith("not an image")
    assert "escapes the data root" in problems["../outside.png"]
    assert len(problems) == 4
