import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter

from leukonet.data.manifest import Manifest
from leukonet.errors import LeukonetError

cv2 = pytest.importorskip("cv2")
from leukonet.data import keypoint_links as kl  # noqa: E402


def _field(seed, size=(700, 560)):
    """A made-up smear: many pale red cells with darker rims and a few dark dots."""
    rng = np.random.default_rng(seed)
    # each smear its own stain, as the colour-histogram families expect of two cells
    fill = tuple(int(v) for v in rng.integers(140, 230, 3))
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(200, 250, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(170):
        x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        rx, ry = rng.uniform(14, 26), rng.uniform(12, 24)
        rim = tuple(int(v) for v in rng.integers(100, 200, 3))
        draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill, outline=rim, width=4)
        draw.ellipse([x - rx / 3, y - ry / 3, x + rx / 3, y + ry / 3], fill=(225, 200, 205))
    for _ in range(40):
        x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(90, 60, 140))
    return img.filter(ImageFilter.GaussianBlur(1))


def _copy(field, centre, angle=0.0, mirror=False, tint=(1.0, 1.0, 1.0)):
    """A 320x240 view of ``field`` around ``centre``: rotated (black fill in the corners),
    optionally mirrored and tinted, the way an augmented copy of a smear looks."""
    cx, cy = centre
    window = field.crop((cx - 160, cy - 120, cx + 160, cy + 120)).rotate(angle)
    if mirror:
        window = window.transpose(Image.FLIP_LEFT_RIGHT)
    rgb = np.asarray(window).astype(np.float32) * np.array(tint, np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def views():
    a, b, c = _field(1), _field(2), _field(3)
    return dict(
        a1=_copy(a, (300, 260)),
        # shifted by a third of the frame, rotated, mirrored, tinted: same field
        a2=_copy(a, (400, 300), angle=25, mirror=True, tint=(1.0, 0.85, 1.1)),
        b1=_copy(b, (300, 260)),
        b2=_copy(b, (380, 240), angle=-40),
        c1=_copy(c, (330, 280), angle=10),
        c2=_copy(c, (250, 220), angle=-70, mirror=True),
    )


def test_copies_of_one_field_agree_and_other_fields_do_not(views):
    def best(x, y):
        return max(kl.inliers(kl.keypoints(views[x]), k) for k in kl._with_mirror(views[y]))

    assert best("a1", "a2") >= 3 * kl.DEFAULT_MIN_INLIERS
    assert best("b1", "b2") >= 3 * kl.DEFAULT_MIN_INLIERS
    assert best("a1", "b1") < kl.DEFAULT_MIN_INLIERS
    assert best("a2", "b2") < kl.DEFAULT_MIN_INLIERS


def test_no_keypoints_in_black_fill_or_on_blank_images(views):
    points, _ = kl.keypoints(views["a2"])
    rgb = views["a2"]
    # every keypoint sits on picture, at least FILL_MARGIN pixels from any fill
    fill = rgb.max(axis=2) < 30
    ys, xs = np.nonzero(fill)
    nearest = np.min(np.hypot(xs[None, :] - points[:, :1], ys[None, :] - points[:, 1:]), axis=1)
    assert len(points) > 50 and nearest.min() >= kl.FILL_MARGIN - 1
    blank = np.full((240, 320, 3), 200, np.uint8)
    assert kl.inliers(kl.keypoints(blank), kl.keypoints(views["a1"])) == 0


def test_link_groups_links_families_of_one_field_only(views):
    images = [views["a1"], views["a1"][:, ::-1], views["a2"], views["b1"], views["b2"]]
    groups = np.array([7, 7, 3, 5, 9])  # a1 (two copies), a2, b1, b2
    calls = []
    links = kl.link_groups(groups, lambda row: images[row], progress=lambda *a: calls.append(a))
    assert sorted((a, b) for a, b, _ in links) == [(3, 7), (5, 9)]
    assert calls == [(4, 4)]  # four families read
    assert all(n >= kl.DEFAULT_MIN_INLIERS for _, _, n in links)


def test_merge_numbers_families_by_first_appearance():
    merged = kl.merge([5, 5, 3, 7, 3, 8], [(3, 7, 20)])
    assert merged.tolist() == [0, 0, 1, 1, 1, 2]
    assert kl.merge([4, 2], []).tolist() == [0, 1]


def test_manifest_group_merges_shifted_copies_the_histogram_splits(tmp_path, views):
    names = {"TRAIN/A/a1.png": "a1", "TRAIN/A/b1.png": "b1", "TRAIN/A/b2.png": "b2",
             "TEST/A/a2.png": "a2"}
    for rel, key in names.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(views[key]).save(tmp_path / rel)
    plain = Manifest.from_folder(tmp_path).dedup().group()
    linked = Manifest.from_folder(tmp_path).dedup().group(keypoints=True)

    def family(m, rel):
        return m.frame.set_index("path").at[rel, "group"]

    # the tinted, shifted copy is its own family by colour, one family with its field by keypoints
    assert family(plain, "TRAIN/A/a1.png") != family(plain, "TEST/A/a2.png")
    assert family(linked, "TRAIN/A/a1.png") == family(linked, "TEST/A/a2.png")
    assert family(linked, "TRAIN/A/b1.png") == family(linked, "TRAIN/A/b2.png")
    assert family(linked, "TRAIN/A/a1.png") != family(linked, "TRAIN/A/b1.png")
    assert any("keypoint links: 2 pairs" in n for n in linked.notes)
    assert any("span split folders" in n for n in linked.notes)
    # the two steps one at a time give the same families and one warning (the merged count)
    stepwise = plain.link_fields()
    pd.testing.assert_frame_equal(stepwise.frame, linked.frame)
    assert stepwise.notes == linked.notes
    assert sum("span split folders" in n for n in stepwise.notes) == 1
    assert not any("keypoint links" in n for n in plain.notes)  # the input is left as it was
    with pytest.raises(LeukonetError, match=r"call group\(\) first"):
        Manifest.from_folder(tmp_path).dedup().link_fields()


def test_keypoint_links_without_a_root_say_what_to_pass():
    frame = pd.DataFrame(dict(path=["a.png"], label=["A"], sha1=["1"]))
    m = Manifest(frame, features=np.zeros((1, 4), np.float32))
    with pytest.raises(Exception, match="pass the data root"):
        m.group(keypoints=True)


def test_audit_with_keypoints_finds_the_same_field_across_manifests(tmp_path, views):
    from leukonet.data.audit import audit

    for rel, key in {"TRAIN/A/a1.png": "a1", "TRAIN/A/b1.png": "b1", "TEST/A/a2.png": "a2"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(views[key]).save(tmp_path / rel)
    m = Manifest.from_folder(tmp_path).dedup().group()  # one build: family ids comparable
    train = m._take(np.flatnonzero(m.frame["split"] == "TRAIN"))
    test = m._take(np.flatnonzero(m.frame["split"] == "TEST"))
    plain = audit(train, test, names=["train", "test"])
    assert plain.verdict.startswith("OK")  # the colour descriptor misses the shifted copy
    linked = audit(train, test, names=["train", "test"], keypoints=True)
    assert linked.across["keypoint"] == 1 and linked.leaks
    assert linked.examples[0] == ("TRAIN/A/a1.png", "TEST/A/a2.png", "same field")
    assert "1 pairs of families showing the same field" in linked.verdict


def test_cli_build_with_keypoint_links_then_split_and_audit(tmp_path, views, capsys, monkeypatch):
    import sys

    from leukonet.cli import main

    root = tmp_path / "data"
    for rel, key in {"TRAIN/A/a1.png": "a1", "TRAIN/A/b1.png": "b1", "TRAIN/A/b2.png": "b2",
                     "TRAIN/B/c1.png": "c1", "TRAIN/B/c2.png": "c2", "TEST/A/a2.png": "a2"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(views[key]).save(root / rel)
    out = tmp_path / "m" / "manifest.csv"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # progress goes to a terminal only
    assert main(["manifest", "build", str(root), "-o", str(out), "--keypoint-links"]) == 0
    captured = capsys.readouterr()
    # tqdm bars (console.progress): each reaches its total
    assert "read images: 100%" in captured.err and "6/6" in captured.err
    assert "keypoint links: 100%" in captured.err
    text = captured.out
    assert "keypoint links: 3 pairs of families show the same field; 6 families -> 3" in text
    frame = pd.read_csv(out).set_index("path")
    assert frame.at["TRAIN/A/a1.png", "group"] == frame.at["TEST/A/a2.png", "group"]
    # --test keeps the TEST folder whole and leaves a1 (a copy of a TEST cell) out
    assert main(["manifest", "split", str(out), "--val", "0.5"]) == 0
    assert "their 1 images outside the test folder are left out" in capsys.readouterr().out
    assert main(["manifest", "audit", str(out), "--keypoints"]) == 2
    assert "pass two manifests and --root" in capsys.readouterr().err


@pytest.mark.slow
def test_on_the_demo_set_keypoint_links_leave_no_source_split(tmp_path):
    # The SYNTHETIC demo set knows each image's source cell (families.csv): the colour
    # histogram splits a few sources across families (its 60x80 images are too small to
    # verify links: same_cell.MIN_SIDE); keypoint links must rejoin them, and may merge a
    # few look-alike cartoons (measured: none of 120 families).
    from leukonet.data.demo import make_demo_data

    make_demo_data(tmp_path)
    truth = pd.read_csv(tmp_path / "families.csv").set_index("path")["source"]
    plain = Manifest.from_folder(tmp_path).dedup()
    linked = plain.group(keypoints=True).frame
    plain = plain.group().frame
    split = [int((f.assign(src=f["path"].map(truth)).groupby("src")["group"].nunique() > 1).sum())
             for f in (plain, linked)]
    assert split[0] > 0 and split[1] == 0
    mixed = (linked.assign(src=linked["path"].map(truth)).groupby("group")["src"].nunique() > 1)
    assert mixed.mean() <= 0.05


def test_missing_opencv_is_a_one_line_error_that_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(LeukonetError, match="keypoint links need OpenCV.*pip install opencv-python-headless"):
        kl._cv2()
