import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukonet.data.augment import apply_policy, batch_seed, build_policy
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


def test_cache_dir_holds_resized_pixels(data, tmp_path):
    root, m = data
    cache = tmp_path / "cache"
    first = ManifestLoader(m.frame, root, (24, 32), batch_size=36, cache_dir=cache)[0][0]
    files = list(cache.rglob("*.npy"))
    assert len(files) == 36 and np.load(files[0]).shape == (24, 32, 3)
    for p in root.rglob("*.png"):  # the cache alone now serves the images
        p.unlink()
    second = ManifestLoader(m.frame, root, (24, 32), batch_size=36, cache_dir=cache)[0][0]
    np.testing.assert_array_equal(first, second)


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
