import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from leukonet.data import images
from leukonet.errors import ImageError


def _save(img, tmp_path, name, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_alpha_is_composited_over_black(tmp_path):
    a = np.zeros((4, 5, 4), np.uint8)
    a[..., 0] = 200
    a[0, 0, 3] = 0  # transparent
    a[1:, :, 3] = 255
    rgb = images.open_rgb(_save(Image.fromarray(a, "RGBA"), tmp_path, "a.png"))
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (0, 0, 0) and tuple(rgb[2, 2]) == (200, 0, 0)


def test_grayscale_and_16_bit(tmp_path):
    rgb = images.open_rgb(_save(Image.new("L", (3, 2), 77), tmp_path, "g.png"))
    assert rgb.shape == (2, 3, 3) and (rgb == 77).all()
    deep = np.array([[65535, 256, 0]], np.uint16)
    rgb = images.open_rgb(_save(Image.fromarray(deep), tmp_path, "d.png"))
    assert rgb[0, :, 0].tolist() == [255, 1, 0]


@pytest.mark.parametrize("name,kw", [("c.jpg", {}), ("b.bmp", {}), ("t.tiff", {})])
def test_other_formats(tmp_path, name, kw):
    img = Image.new("RGB", (6, 4), (10, 200, 30))
    if name == "c.jpg":
        img = img.convert("CMYK")
    rgb = images.open_rgb(_save(img, tmp_path, name, **kw))
    assert rgb.shape == (4, 6, 3)
    assert abs(int(rgb[1, 1, 1]) - 200) < 12


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rgb = images.open_rgb(_save(img, tmp_path, "r.jpg", exif=exif, quality=95))
    assert rgb.shape == (40, 20, 3)
    assert rgb[2, 10, 2] > 200  # the blue strip is now at the top


def test_rejections(tmp_path):
    with pytest.raises(ImageError, match="empty file"):
        images.open_rgb(_save_bytes(tmp_path, "z.png", b""))
    with pytest.raises(ImageError, match="not an image"):
        images.open_rgb(_save_bytes(tmp_path, ".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(64)))
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "JPEG")
    with pytest.raises(ImageError, match="truncated"):
        images.decode_rgb(buf.getvalue()[: len(buf.getvalue()) // 2], "cut.jpg")
    with pytest.raises(ImageError, match="image too large .* raise --max-pixels"):
        images.open_rgb(_save(Image.new("RGB", (300, 300)), tmp_path, "big.png"), max_pixels=10_000)
    with pytest.raises(ImageError, match="file not found") as e:
        images.open_rgb(tmp_path / "missing.png")
    assert e.value.path.endswith("missing.png")


def _save_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_hash_and_resize(tmp_path):
    path = _save(Image.new("RGB", (8, 6), (1, 2, 3)), tmp_path, "x.png")
    rgb, sha1 = images.read_image(path)
    assert sha1 == hashlib.sha1(path.read_bytes()).hexdigest() == images.file_sha1(path)
    small = images.resize_rgb(rgb, (3, 4))
    assert small.shape == (3, 4, 3) and small.dtype == np.uint8
    assert images.resize_rgb(rgb, (6, 8)) is rgb
    assert images.is_image_name("A.JPEG") and not images.is_image_name(".DS_Store")
