import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukonet.data.augment import apply_policy, batch_seed, build_policy, mix_up
from leukonet.data.loader import ManifestLoader
from leukonet.data.manifest import Manifest
from leukonet.errors import LeukonetError
from tests.conftest import write_tree


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    write_tree(root, {"A": 4, "B": 4, "C": 4}, copies=3)
    m = Manifest.from_folder(root).dedup().group()
    return root, m


def test_batches(data):
    root, m = data
    loader = ManifestLoader(m.frame, root, (24, 32), batch_size=8, workers=1)
    assert len(loader) == 5  # 36 images
    x, y = loader[0]
    assert x.shape == (8, 24, 32, 3) and x.dtype == np.uint8  # the model casts
    floats = ManifestLoader(m.frame, root, (24, 32), batch_size=8, workers=1, float_pixels=True)[0][0]
    assert floats.dtype == np.float32 and np.array_equal(floats, x)
    assert x.max() > 0
    np.testing.assert_array_equal(y.argmax(1), m.frame["label_index"].to_numpy()[:8])
    assert loader[4][0].shape[0] == 4  # the last, partial batch


def test_shuffle_is_seeded_and_changes_per_epoch(data):
    root, m = data

    def labels(seed, epochs=2):
        loader = ManifestLoader(m.frame, root, (8, 8), batch_size=36, shuffle=True, seed=seed)
        out = []
        for _ in range(epochs):
            out.append(loader[0][1].argmax(1).tolist())
            loader.on_epoch_end()
        return out

    a, b, c = labels(0), labels(0), labels(1)
    assert a == b and a != c and a[0] != a[1]


def test_augmentation_is_seeded_and_only_on_request(data):
    root, m = data
    policy = build_policy()
    plain = ManifestLoader(m.frame, root, (24, 32), batch_size=4)
    aug1 = ManifestLoader(m.frame, root, (24, 32), batch_size=4, policy=policy, seed=3)
    aug2 = ManifestLoader(m.frame, root, (24, 32), batch_size=4, policy=build_policy(), seed=3)
    x0, x1, x2 = plain[0][0], aug1[0][0], aug2[0][0]
    np.testing.assert_array_equal(x1, x2)
    assert np.abs(x1 - x0).mean() > 1.0
    assert not np.array_equal(apply_policy(policy, x0, batch_seed(3, 0, 0)),
                              apply_policy(policy, x0, batch_seed(3, 1, 0)))


def test_mix_up_blends_images_and_targets_with_the_same_pairs_and_weights():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, 5, 6, 3)).astype(np.float32)
    eye = np.eye(8, dtype=np.float32)  # one class per image: the mixed targets say who was mixed
    mixed, y = mix_up(x, eye, alpha=1.0, seed=11)
    np.testing.assert_allclose(y.sum(1), 1.0, rtol=1e-6)
    assert (y.max(1) < 0.99).sum() >= 4  # alpha 1: most images are real blends
    # each image is the same blend of the batch as its target
    np.testing.assert_allclose(mixed.reshape(8, -1), y @ x.reshape(8, -1), rtol=1e-4, atol=1e-3)
    again, y_again = mix_up(x, eye, alpha=1.0, seed=11)
    np.testing.assert_array_equal(again, mixed)
    assert not np.array_equal(mix_up(x, eye, alpha=1.0, seed=12)[1], y)
    # multi-task targets: every output mixed with the same pairs and weights
    _, both = mix_up(x, {"cell_type": eye, "aux": eye[:, ::-1].copy()}, alpha=1.0, seed=11)
    np.testing.assert_allclose(both["cell_type"], y, rtol=1e-6)
    np.testing.assert_allclose(both["aux"], y[:, ::-1], rtol=1e-6)


def test_loader_mixes_up_training_batches_only_when_asked(data):
    root, m = data
    plain = ManifestLoader(m.frame, root, (24, 32), batch_size=12, shuffle=True, seed=3)
    mixing = ManifestLoader(m.frame, root, (24, 32), batch_size=12, shuffle=True, seed=3, mixup=0.4)
    (x0, y0), (x1, y1) = plain[0], mixing[0]
    assert set(np.unique(y0)) == {0.0, 1.0}
    assert x1.dtype == np.float32 and x1.shape == x0.shape
    np.testing.assert_allclose(y1.sum(1), 1.0, rtol=1e-6)
    assert (y1.max(1) < 0.999).any() and not np.array_equal(x1, x0)
    # each row keeps some of its own label (a Beta weight is never 0) and at most one other
    assert (y1[np.arange(12), y0.argmax(1)] > 0).all() and ((y1 > 0).sum(1) <= 2).all()
    np.testing.assert_array_equal(ManifestLoader(m.frame, root, (24, 32), batch_size=12, shuffle=True,
                                                 seed=3, mixup=0.4)[0][0], x1)  # seeded


def test_cache_dir_holds_resized_pixels(data, tmp_path):
    root, m = data
    cache = tmp_path / "cache"
    first = ManifestLoader(m.frame, root, (24, 32), batch_size=36, cache_dir=cache)[0][0]
    files = sorted(cache.rglob("*.rgb"))
    entry = 24 * 32 * 3 + 4  # the pixels and their CRC-32
    assert len(files) == 36 and {f.stat().st_size for f in files} == {entry}
    # A torn entry (short, long, or the right length with other bytes) or one gone is
    # decoded again and rewritten whole.
    originals = [f.read_bytes() for f in files[:4]]
    files[0].write_bytes(originals[0][:100])
    files[1].write_bytes(originals[1] + b"x")
    files[2].write_bytes(bytes(len(originals[2])))  # zeros: what a crash can leave
    files[3].unlink()
    again = ManifestLoader(m.frame, root, (24, 32), batch_size=36, cache_dir=cache)[0][0]
    np.testing.assert_array_equal(first, again)
    assert [f.read_bytes() for f in files[:4]] == originals
    for p in root.rglob("*.png"):  # the cache alone now serves the images
        p.unlink()
    loader = ManifestLoader(m.frame, root, (24, 32), batch_size=36, cache_dir=cache)
    np.testing.assert_array_equal(first, loader[0][0])
    np.testing.assert_array_equal(first[5], loader.load(5))  # without a batch slot to fill


def test_bad_image_mid_epoch(data):
    root, m = data
    victim = root / m.frame["path"].iloc[2]
    victim.write_bytes(victim.read_bytes()[:40])
    loader = ManifestLoader(m.frame, root, (24, 32), batch_size=8)
    with pytest.raises(LeukonetError, match=f"{m.frame['path'].iloc[2]}.*--skip-bad-images"):
        loader[0]
    skipping = ManifestLoader(m.frame, root, (24, 32), batch_size=8, skip_bad_images=True)
    x, y = skipping[0]
    assert x.shape[0] == 7 and len(y) == 7
    assert list(skipping.bad) == [m.frame["path"].iloc[2]]


def test_jpegs_decoded_into_the_batch_match_one_by_one_loading(tmp_path, monkeypatch):
    # JPEGs at the batch size and at twice it are decoded straight into the batch; an odd
    # size, a PNG and an EXIF-rotated JPEG take a copy. A truncated JPEG mid-batch fails
    # after writing into its slot, which the next image must overwrite.
    from leukonet.data import images

    pytest.importorskip("simplejpeg")
    root = tmp_path / "jpegs"
    (root / "A").mkdir(parents=True)
    rng = np.random.default_rng(0)
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 3  # upside down
    files = [("exact.jpg", (24, 32), {}), ("double.jpg", (48, 64), {}), ("odd.jpg", (30, 37), {}),
             ("bad.jpg", (24, 32), {}), ("after_bad.jpg", (24, 32), {}), ("p.png", (24, 32), {}),
             ("rotated.jpg", (24, 32), {"exif": exif})]
    for name, (h, w), kw in files:
        small = Image.fromarray(rng.integers(0, 255, (h // 4 + 1, w // 4 + 1, 3), np.uint8))
        small.resize((w, h), Image.BICUBIC).save(root / "A" / name, quality=90, **kw)
    bad = root / "A" / "bad.jpg"
    bad.write_bytes(bad.read_bytes()[:-200])  # header intact, scan cut short
    frame = pd.DataFrame({"path": [f"A/{n}" for n, _, _ in files], "label_index": 0})
    batches = {}
    for decoder in ("simplejpeg", "pillow"):
        monkeypatch.setattr(images, "JPEG_DECODER", decoder)
        loader = ManifestLoader(frame, root, (24, 32), batch_size=7, skip_bad_images=True, workers=1)
        batches[decoder], keep = loader.load_batch(0)
        assert list(loader.bad) == ["A/bad.jpg"] and keep.tolist() == [0, 1, 2, 4, 5, 6]
        one_by_one = np.stack([loader.load(i) for i in keep])
        np.testing.assert_array_equal(batches[decoder], one_by_one)
    np.testing.assert_array_equal(batches["simplejpeg"], batches["pillow"])


@pytest.mark.slow
def test_memory_stays_bounded_on_5000_images(tmp_path):
    """5,000 images at 96x128 are 184 MB decoded; one pass must not hold them."""
    psutil = pytest.importorskip("psutil")
    root = tmp_path / "many"
    rng = np.random.default_rng(0)
    rows = []
    for label in ("A", "B"):
        (root / label).mkdir(parents=True)
        for i in range(2500):
            path = f"{label}/{i}.png"
            Image.fromarray(rng.integers(0, 255, (12, 16, 3), np.uint8)).save(root / path)
            rows.append(dict(path=path, label=label))
    frame = Manifest(pd.DataFrame(rows)).frame
    loader = ManifestLoader(frame, root, (96, 128), batch_size=50, workers=2)
    process = psutil.Process(os.getpid())
    loader[0]
    before = process.memory_info().rss
    peak = before
    for i in range(len(loader)):
        loader[i]
        peak = max(peak, process.memory_info().rss)
    growth_mb = (peak - before) / 2**20
    assert growth_mb < 60, f"RSS grew {growth_mb:.0f} MB"


@pytest.mark.skipif(os.name != "posix", reason="raw byte file names are a POSIX thing")
def test_non_utf8_names_load_and_escaping_paths_are_refused_up_front(tmp_path):
    root = tmp_path / "data"
    (root / "A").mkdir(parents=True)
    Image.new("RGB", (32, 24), (200, 10, 10)).save(root / "A" / "plain.png")
    raw = os.path.join(os.fsencode(root / "A"), b"caf\xe9.png")  # not UTF-8 on disk
    Image.new("RGB", (32, 24), (10, 10, 200)).save(os.fsdecode(raw), format="PNG")
    # the manifest stores the name read as Latin-1 (scan.posix_name)
    frame = pd.DataFrame({"path": ["A/plain.png", "A/café.png"], "label_index": [0, 1]})
    loader = ManifestLoader(frame, root, (24, 32), batch_size=2, workers=1)
    x, y = loader[0]
    assert x[0, 5, 5].tolist() == [200, 10, 10] and x[1, 5, 5].tolist() == [10, 10, 200]
    assert loader[0][0].tolist() == x.tolist()  # the second time from the remembered name
    bad = pd.DataFrame({"path": ["A/plain.png", "../outside.png"], "label_index": [0, 1]})
    with pytest.raises(LeukonetError, match=r"row 3: path '../outside.png' escapes the data root"):
        ManifestLoader(bad, root, (24, 32))
