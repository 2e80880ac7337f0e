"""Verified links (same_cell.py): colour proposes, keypoints confirm, so a set of distinct
cells in even stain is not chained into giant families, and planted copies still group."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter

from leukonet.data import families, same_cell
from leukonet.data.manifest import Manifest
from tests.conftest import BLOOD_CELLS

cv2 = pytest.importorskip("cv2")


def _field(seed, size=(280, 280)):
    """A distinct made-up cell in ONE stain shared by all: red cells at random places
    around a purple nucleus. Only the layout differs, as on an analyser's even staining."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, (228, 222, 215))
    draw = ImageDraw.Draw(img)
    for _ in range(48):
        x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        r, s = rng.uniform(12, 20), rng.uniform(0.8, 1.2)
        draw.ellipse([x - r, y - r * s, x + r, y + r * s], fill=(214, 150, 150),
                     outline=(170, 100, 110), width=3)
        draw.ellipse([x - r / 3, y - r / 3, x + r / 3, y + r / 3], fill=(226, 190, 190))
    for _ in range(60):  # platelets and debris: the small detail keypoints latch on to
        x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        r = rng.uniform(1.5, 4)
        draw.ellipse([x - r, y - r * rng.uniform(0.5, 1), x + r, y + r], fill=(150, 110, 160))
    cx, cy = size[0] / 2 + rng.uniform(-40, 40), size[1] / 2 + rng.uniform(-40, 40)
    for _ in range(3):  # a lobed nucleus
        dx, dy = rng.uniform(-16, 16, 2)
        draw.ellipse([cx + dx - 16, cy + dy - 13, cx + dx + 16, cy + dy + 13], fill=(100, 60, 150))
    return img.filter(ImageFilter.GaussianBlur(1))


def _view(field, kind=None, side=200):
    """The centre ``side`` square of ``field``, or a copy of it: rotated 20 degrees about
    the centre, mirrored, or framed 24 px to the right and 12 down."""
    w, h = field.size
    box = [(w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2]
    if kind == "rotated":
        field = field.rotate(20, resample=Image.BILINEAR)
    if kind == "shifted":
        box = [box[0] + 24, box[1] + 12, box[2] + 24, box[3] + 12]
    view = field.crop(box)
    return view.transpose(Image.FLIP_LEFT_RIGHT) if kind == "flipped" else view


@pytest.fixture(scope="module")
def distinct_cells(tmp_path_factory):
    """36 distinct cells in two classes, and 3 planted copies of three of them."""
    root = tmp_path_factory.mktemp("distinct")
    truth = {}
    for k in range(36):
        label = "A" if k % 2 else "B"
        (root / label).mkdir(exist_ok=True)
        _view(_field(k)).save(root / label / f"cell{k:02d}.png")
        truth[f"{label}/cell{k:02d}.png"] = k
    for k, kind in zip((3, 10, 17), ("rotated", "flipped", "shifted")):
        label = "A" if k % 2 else "B"
        _view(_field(k), kind).save(root / label / f"copy{k:02d}.png")
        truth[f"{label}/copy{k:02d}.png"] = k
    return root, truth


def test_planted_copies_are_grouped_and_nothing_else(distinct_cells):
    root, truth = distinct_cells
    plain = Manifest.from_folder(root).dedup()
    source = plain.frame["path"].map(truth)
    # the colour histogram alone chains these evenly stained cells (the failure fixed here)
    by_colour = families.group_features(plain.features().astype(np.float32))
    assert len(np.unique(by_colour)) < 36 / 2
    m = plain.group()
    groups = m.frame["group"]
    assert groups.nunique() == 36  # 36 cells: each copy joins its cell, no other link
    assert (m.frame.groupby(source)["group"].nunique() == 1).all()
    assert (m.frame.groupby("group")["path"].apply(lambda p: p.map(truth).nunique()) == 1).all()
    note = next(n for n in m.notes if n.startswith("links:"))
    assert "3 verified as one picture" in note and "refused as different cells" in note
    assert not [n for n in m.notes if n.startswith("warning")]


def test_audit_counts_verified_links_only(distinct_cells):
    root, truth = distinct_cells
    m = Manifest.from_folder(root).dedup().group()
    copies = m.frame["path"].str.startswith(("A/copy", "B/copy")).to_numpy()
    originals = m._take(np.flatnonzero(~copies))
    planted = m._take(np.flatnonzero(copies))
    report = originals.audit(planted)
    assert report.across["near"] == 3  # each copy with its cell; no look-alike neighbour
    assert {(a.split("/")[1][4:], b.split("/")[1][4:]) for a, b, k in report.examples
            if k == "near"} == {("03.png", "03.png"), ("10.png", "10.png"), ("17.png", "17.png")}
    alone = originals.audit()
    assert alone.within["manifest 1"]["near"] == 0


def test_unverifiable_pairs_link_on_colour_and_are_counted():
    # blank images have no keypoints: linked on colour alone, and said so
    rgb = [np.full((120, 120, 3), 200 + k, np.uint8) for k in range(3)] + [np.zeros((120, 120, 3), np.uint8) + 60]
    features = np.array([families.describe(x) for x in rgb])
    groups, stats = same_cell.verified_groups(features, lambda r: rgb[r])
    assert groups.tolist() == [0, 0, 0, 1]
    assert stats.colour_only == 2 and stats.tested == 0
    assert "2 pairs of images too small or plain for keypoints linked on colour alone" in stats.note(0.145)


def test_families_do_not_depend_on_the_order_pairs_are_tested(distinct_cells, monkeypatch):
    root, _ = distinct_cells
    m = Manifest.from_folder(root).dedup()
    features, read = m.features().astype(np.float32), m.image_reader()
    a, _ = same_cell.verified_groups(features, read)
    monkeypatch.setattr(same_cell, "CHUNK", 1)  # one pair at a time
    b, _ = same_cell.verified_groups(features, read, workers=1)
    assert a.tolist() == b.tolist()


@pytest.mark.slow
@pytest.mark.shared_data
def test_on_blood_cells_originals_planted_copies_group_and_distinct_smears_do_not(tmp_path):
    # 40 of the 367 original smears (distinct photographs of one lab and stain), their
    # centre crops, and three copies planted among them
    originals = BLOOD_CELLS.parent / "originals"
    if not originals.is_dir():
        pytest.skip("../shared/datasets/blood-cells/originals is not here")
    files = sorted(originals.glob("BloodImage_*.jpg"))[:40]
    (tmp_path / "X").mkdir()
    for f in files:
        _view(Image.open(f).convert("RGB"), side=300).save(tmp_path / "X" / f"{f.stem}.png")
    for f, kind in zip(files[5:8], ("rotated", "flipped", "shifted")):
        _view(Image.open(f).convert("RGB"), kind, side=300).save(tmp_path / "X" / f"{f.stem}_copy.png")
    m = Manifest.from_folder(tmp_path).dedup().group()
    stem = m.frame["path"].str.replace("_copy", "")
    assert m.frame["group"].nunique() == 40
    assert (m.frame.groupby(stem)["group"].nunique() == 1).all()
