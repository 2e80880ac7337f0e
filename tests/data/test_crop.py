import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leukonet.data.crop import crop_nucleus, nucleus_centre
from leukonet.data.loader import ManifestLoader

PINK = (230, 170, 190)  # background / red-cell colour: blue - green = 20
PURPLE = (90, 40, 160)  # stained nucleus: blue - green = 120


def smear(h=240, w=320, centre=(60, 250), radius=25):
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:] = PINK
    yy, xx = np.mgrid[:h, :w]
    rgb[(yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius ** 2] = PURPLE
    return rgb


@pytest.mark.parametrize("centre", [(60, 250), (180, 70), (120, 160)])
def test_centre_finds_the_nucleus_anywhere(centre):
    cy, cx = nucleus_centre(smear(centre=centre))
    assert abs(cy - centre[0]) <= 8 and abs(cx - centre[1]) <= 8


def test_no_nucleus_falls_back_to_the_image_centre():
    assert nucleus_centre(np.full((90, 120, 3), PINK, np.uint8)) == (45, 60)


def test_crop_is_square_holds_the_nucleus_and_stays_inside():
    rgb = smear(centre=(20, 300), radius=15)  # near a corner: the window is moved inside
    out = crop_nucleus(rgb, 0.5)
    assert out.shape == (120, 120, 3)
    assert (out == PURPLE).all(axis=-1).sum() == (rgb == PURPLE).all(axis=-1).sum()
    with pytest.raises(ValueError, match="fraction"):
        crop_nucleus(rgb, 1.5)


def test_loader_crops_before_resizing_and_caches_apart(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(smear(centre=(60, 250))).save(root / "a.png")
    frame = pd.DataFrame(dict(path=["a.png"], label_index=[0], sha1=["ab" * 20]))
    cache = tmp_path / "cache"
    plain = ManifestLoader(frame, root, (48, 48), batch_size=1, cache_dir=cache)[0][0][0]
    cropped = ManifestLoader(frame, root, (48, 48), batch_size=1, cache_dir=cache,
                             nucleus_crop=0.5)[0][0][0]
    purple = lambda x: (np.abs(x - np.array(PURPLE)).sum(-1) < 30).mean()  # noqa: E731
    # The nucleus fills far more of the cropped view than of the squashed whole frame.
    assert purple(cropped) > 3 * purple(plain)
    assert sorted(p.name for p in cache.iterdir()) == ["48x48", "48x48-nucleus0.5"]


def test_loader_refuses_a_crop_fraction_outside_zero_one(tmp_path):
    from leukonet.errors import LeukonetError

    frame = pd.DataFrame(dict(path=["a.png"], label_index=[0]))
    with pytest.raises(LeukonetError, match=r"--nucleus-crop 2: expected a fraction in \(0, 1\]"):
        ManifestLoader(frame, tmp_path, (8, 8), nucleus_crop=2)
