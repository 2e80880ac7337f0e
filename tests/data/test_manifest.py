import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukonet.data.manifest import COLUMNS, Manifest
from leukonet.errors import LeukonetError
from tests.conftest import write_tree


@pytest.fixture
def built(tree):
    root, truth = tree
    return root, truth, Manifest.from_folder(root).dedup().group()


def test_rows_and_columns(built):
    root, truth, m = built
    assert list(m.frame.columns) == COLUMNS
    assert set(m.frame["path"]) == set(truth)
    assert m.classes == ["EOSINOPHIL", "LYMPHOCYTE", "NEUTROPHIL"]
    row = m.frame.iloc[0]
    data = (root / row["path"]).read_bytes()
    assert row["sha1"] == hashlib.sha1(data).hexdigest()
    assert (row["width"], row["height"]) == (48, 48)
    assert (m.frame["label_index"] == m.frame["label"].map(m.classes.index)).all()


def test_families_follow_sources(built):
    _, truth, m = built
    source = m.frame["path"].map(lambda p: truth[p][1])
    # every family holds one source, and every source one family
    assert (m.frame.groupby("group").apply(lambda f: source[f.index].nunique(),
                                           include_groups=False) == 1).all()
    assert (m.frame.groupby(source)["group"].nunique() == 1).all()
    assert m.frame["group"].nunique() == 12


def test_bad_files_are_rejected_with_reasons(tree):
    root, _ = tree
    (root / "EOSINOPHIL" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    (root / "EOSINOPHIL" / "empty.png").write_bytes(b"")
    good = (root / "LYMPHOCYTE").glob("*.png").__next__()
    jpeg = root / "LYMPHOCYTE" / "cut.jpg"
    Image.open(good).convert("RGB").resize((300, 200)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    Image.new("RGB", (300, 300)).save(root / "NEUTROPHIL" / "huge.png")
    m = Manifest.from_folder(root, max_pixels=80_000).dedup()
    reasons = dict(zip(m.rejects["path"], m.rejects["reason"]))
    assert reasons["EOSINOPHIL/.DS_Store"].startswith("not an image")
    assert reasons["EOSINOPHIL/empty.png"].startswith("empty file")
    assert reasons["LYMPHOCYTE/cut.jpg"].startswith("truncated")
    assert reasons["NEUTROPHIL/huge.png"].startswith("image too large")
    table = m.class_table()
    assert table.loc["EOSINOPHIL", "rejected"] == 2
    assert table.loc["EOSINOPHIL", "kept"] == 12
    assert table.loc["total", "rejected"] == 4


def test_converted_modes_are_kept(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (10, 12, 4), dtype=np.uint8)
    cls = tmp_path / "A"
    cls.mkdir()
    Image.fromarray(pixels, "RGBA").save(cls / "alpha.png")
    Image.fromarray(pixels[..., 0], "L").save(cls / "gray.png")
    Image.fromarray(pixels[..., :3]).convert("CMYK").save(cls / "cmyk.jpg")
    Image.fromarray(pixels[..., :3]).save(cls / "x.bmp")
    Image.fromarray(pixels[..., :3]).save(cls / "x.tiff")
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 256).save(cls / "deep.png")
    m = Manifest.from_folder(tmp_path)
    assert len(m.rejects) == 0
    assert len(m) == 6
    assert set(m.frame["width"]) == {12} and set(m.frame["height"]) == {10}


def test_exact_duplicates_within_a_label_keep_the_first(built, tmp_path):
    root, _, _ = built
    first = sorted((root / "EOSINOPHIL").glob("*.png"))[0]
    shutil.copy(first, root / "EOSINOPHIL" / "zz_copy.png")
    m = Manifest.from_folder(root).dedup()
    assert "EOSINOPHIL/zz_copy.png" not in set(m.frame["path"])
    assert first.relative_to(root).as_posix() in set(m.frame["path"])
    row = m.rejects.set_index("path").loc["EOSINOPHIL/zz_copy.png"]
    assert row["kind"] == "duplicate"
    assert row["reason"] == f"duplicate of {first.relative_to(root).as_posix()}"
    assert m.class_table().loc["EOSINOPHIL", "duplicates"] == 1


def test_conflicting_labels_drop_both_by_default(built):
    root, _, _ = built
    first = sorted((root / "EOSINOPHIL").glob("*.png"))[0]
    shutil.copy(first, root / "NEUTROPHIL" / "same_content.png")
    m = Manifest.from_folder(root).dedup()
    paths = set(m.frame["path"])
    assert first.relative_to(root).as_posix() not in paths
    assert "NEUTROPHIL/same_content.png" not in paths
    conflicts = m.rejects[m.rejects["kind"] == "conflict"]
    assert len(conflicts) == 2
    assert conflicts["reason"].str.contains("EOSINOPHIL, NEUTROPHIL").all()
    kept = Manifest.from_folder(root).dedup(on_conflict="first")
    assert first.relative_to(root).as_posix() in set(kept.frame["path"])
    assert "NEUTROPHIL/same_content.png" not in set(kept.frame["path"])


def test_same_name_different_content_is_not_a_duplicate(tmp_path):
    write_tree(tmp_path, {"A": 1}, copies=1, split="TRAIN", seed=1)
    write_tree(tmp_path, {"A": 1}, copies=1, split="TEST", seed=2)
    # same file name, different pixels
    (tmp_path / "TEST" / "A" / "s2_0_c0.png").rename(tmp_path / "TEST" / "A" / "s1_0_c0.png")
    m = Manifest.from_folder(tmp_path).dedup()
    assert len(m) == 2 and len(m.rejects) == 0


def test_round_trip_and_sidecars(built, tmp_path):
    _, _, m = built
    out = m.to_csv(tmp_path / "out" / "manifest.csv")
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["classes"] == m.classes
    assert (tmp_path / "out" / "manifest.rejects.csv").is_file()
    back = Manifest.read_csv(out)
    pd.testing.assert_frame_equal(back.frame[COLUMNS[:6]], m.frame[COLUMNS[:6]], check_dtype=False)
    assert (back.frame["group"].to_numpy() == m.frame["group"].to_numpy()).all()
    assert "split" not in pd.read_csv(out).columns  # no split folders, no split column
    with pytest.raises(LeukonetError, match="exists; pass --overwrite"):
        m.to_csv(out)


def test_read_csv_rejects_foreign_and_inconsistent_files(tmp_path, built):
    _, _, m = built
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(LeukonetError, match="not a leukonet manifest"):
        Manifest.read_csv(bad)
    out = m.to_csv(tmp_path / "m.csv")
    frame = pd.read_csv(out)
    frame.loc[3, "label_index"] = (frame.loc[3, "label_index"] + 1) % 3
    frame.to_csv(out, index=False)
    with pytest.raises(LeukonetError, match=r"m.csv:5: label_index"):
        Manifest.read_csv(out)
    with pytest.raises(LeukonetError, match="manifest not found"):
        Manifest.read_csv(tmp_path / "nope.csv")


def test_a_subset_that_lacks_a_class_loads_without_its_sidecar(tmp_path, built):
    # A manifest cut by hand (e.g. the validation rows of a few families) keeps the
    # original label_index values, with gaps where a class is missing.
    _, _, m = built
    out = m.to_csv(tmp_path / "full" / "m.csv")
    frame = pd.read_csv(out)
    dropped = m.classes[1]
    sub = tmp_path / "sub.csv"  # no classes.json beside it
    frame[frame["label"] != dropped].to_csv(sub, index=False)
    back = Manifest.read_csv(sub)
    assert dropped not in back.classes
    assert list(back.frame["label"]) == list(frame[frame["label"] != dropped]["label"])


def test_summary_counts(built):
    _, _, m = built
    text = m.summary()
    assert "families: 12, 100.00% hold a single label" in text
    assert m.class_table().loc["total", "kept"] == 36


def test_group_warns_when_a_family_spans_split_folders(tmp_path):
    truth = write_tree(tmp_path, {"A": 2}, copies=2, split="TRAIN", seed=3)
    src = next(p for p in truth if p.endswith("_c1.png"))
    dst = tmp_path / "TEST" / "A" / "leak.png"
    dst.parent.mkdir(parents=True)
    Image.open(tmp_path / src).transpose(Image.FLIP_TOP_BOTTOM).save(dst)
    write_tree(tmp_path, {"A": 1}, copies=1, split="TEST", seed=4)
    m = Manifest.from_folder(tmp_path).dedup().group()
    assert any("1 families span split folders" in n for n in m.notes)


def test_build_warns_about_large_and_mixed_families_and_reports_purity_by_image():
    rows = [dict(path=f"x/{i}.png", label="A" if i < 150 else "B", sha1=str(i), group=i)
            for i in range(300)]
    frame = pd.DataFrame(rows)
    frame.loc[:9, "group"] = 0  # a family of 10 images (3.3 % of 300)
    frame.loc[150:159, "group"] = 0  # ...and 10 of the other label: 20 images, 2 labels
    m = Manifest(frame)._warn_families()
    large = [n for n in m.notes if n.startswith("warning: large families")]
    mixed = [n for n in m.notes if n.startswith("warning: families hold several labels")]
    assert len(large) == 1 and "family 0, 20 images, 6.7%" in large[0]
    assert len(mixed) == 1 and "1 families, 20 images" in mixed[0] and "A 10, B 10" in mixed[0]
    summary = m.summary()
    assert "99.64% hold a single label; 93.33% of the images are in those" in summary
    # a second grouping step replaces the warnings instead of adding to them
    assert m._warn_families().notes == m.notes and len(m.notes) == 2
    small = Manifest(frame.iloc[150:160].assign(group=0, label="B"))._warn_families()
    # ten images: any family is "large", nothing to say of that; but one family of B
    assert small.notes == ["warning: too few families: class B has 1 family (10 images): it "
                           "cannot be in every split (train, val, test); add images of it, or "
                           "drop it from the manifest"]


def test_build_says_how_many_images_it_converted_from_which_mode(tree):
    root, _ = tree
    Image.new("RGBA", (48, 48), (200, 100, 100, 128)).save(root / "EOSINOPHIL" / "alpha.png")
    Image.new("L", (48, 48), 90).save(root / "EOSINOPHIL" / "grey.png")
    m = Manifest.from_folder(root)
    assert "converted to RGB: 1 greyscale, 1 with transparency (RGBA: composited over white)" in m.notes
