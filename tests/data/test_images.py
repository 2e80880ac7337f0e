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


def _bytes(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _reason(excinfo):
    return excinfo.value.reason


# ---- modes ---------------------------------------------------------------------------

def test_rgba_png_alpha_is_composited_over_white(tmp_path):
    # white is a smear's background: over black, a half-transparent cell looked half dark
    a = np.zeros((4, 5, 4), np.uint8)
    a[..., 0] = 200
    a[1:, :, 3] = 255  # row 0 fully transparent
    a[1, 1, 3] = 128   # half transparent
    rgb = images.open_rgb(_save(Image.fromarray(a, "RGBA"), tmp_path, "a.png"))
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[2, 2]) == (200, 0, 0)
    assert abs(int(rgb[1, 1, 0]) - 227) <= 1 and abs(int(rgb[1, 1, 1]) - 127) <= 1


def test_la_and_palette_transparency_become_white():
    la = Image.new("LA", (3, 3), (250, 255))
    la.putpixel((0, 0), (20, 0))
    rgb = images.decode_rgb(_bytes(la, "PNG"))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (250, 250, 250)

    p = Image.new("P", (3, 3), 1)
    p.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    rgb = images.decode_rgb(_bytes(p, "PNG", transparency=0))  # index 0 (black) transparent
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (0, 200, 0)


def test_sixteen_bit_pngs_are_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    grey = images.decode_rgb(_bytes(Image.fromarray(ramp), "PNG"))
    assert grey.max() == 255 and abs(int(grey[32, 32, 0]) - int(ramp[32, 32]) // 256) <= 1
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.stack([ramp, ramp // 2, ramp // 4], -1)
    ok, png = cv2.imencode(".png", rgb16[..., ::-1])
    rgb = images.decode_rgb(png.tobytes())
    assert tuple(rgb[63, 63]) == (255, 127, 63)


def test_conversions_are_counted_once_per_file_by_mode():
    since = images.converted_files()
    grey = _bytes(Image.new("L", (4, 4), 77), "PNG")
    rgba = _bytes(Image.new("RGBA", (4, 4), (9, 9, 9, 128)), "PNG")
    for _ in range(3):  # read again each epoch: still one file each
        images.decode_rgb(grey, "a.png")
        images.decode_rgb(rgba, "b.png")
    images.decode_rgb(rgba, "c.png")
    images.decode_rgb(_bytes(Image.new("RGB", (4, 4)), "PNG"), "d.png")
    assert images.conversion_note(since) == (
        "converted to RGB: 1 greyscale, 2 with transparency (RGBA: composited over white)")
    assert images.conversion_note(images.converted_files()) == ""


def test_grayscale_gives_three_equal_channels(tmp_path):
    g = Image.new("L", (3, 2), 77)
    g.putpixel((2, 1), 10)
    rgb = images.open_rgb(_save(g, tmp_path, "g.png"))
    assert rgb.shape == (2, 3, 3)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb[0, 0, 0] == 77 and rgb[1, 2, 0] == 10


def test_16_bit_png_keeps_the_top_8_bits(tmp_path):
    img = Image.fromarray(np.array([[65535, 256, 255, 0]], np.uint16))
    assert img.mode == "I;16"
    rgb = images.open_rgb(_save(img, tmp_path, "d.png"))
    assert rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [255, 1, 0, 0]  # not clipped to 255 as convert("L") would


def test_32_bit_int_and_float_modes_are_clipped():
    i = Image.fromarray(np.array([[-5, 512, 70000]], np.int32))
    assert i.mode == "I"
    assert images.decode_rgb(_bytes(i, "TIFF"))[0, :, 0].tolist() == [0, 2, 255]
    f = Image.fromarray(np.array([[-3.0, 100.7, 300.5]], np.float32))
    assert f.mode == "F"
    assert images.decode_rgb(_bytes(f, "TIFF"))[0, :, 0].tolist() == [0, 100, 255]


def test_cmyk_jpeg_becomes_rgb(tmp_path, jpeg_decoder):
    img = Image.new("RGB", (6, 4), (10, 200, 30)).convert("CMYK")
    rgb = images.open_rgb(_save(img, tmp_path, "c.jpg"))
    assert rgb.shape == (4, 6, 3)
    assert abs(int(rgb[1, 1, 1]) - 200) < 12 and rgb[1, 1, 0] < 40


@pytest.mark.parametrize("name", ["b.bmp", "t.tif", "t.tiff", "w.webp"])
def test_other_formats(tmp_path, name):
    img = Image.new("RGB", (6, 4), (10, 200, 30))
    kw = {"lossless": True} if name.endswith(".webp") else {}
    rgb = images.open_rgb(_save(img, tmp_path, name, **kw))
    assert rgb.shape == (4, 6, 3)
    assert tuple(rgb[1, 1]) == (10, 200, 30)


def test_multi_frame_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (5, 3), c) for c in [(255, 0, 0), (0, 0, 255)]]
    path = _save(frames[0], tmp_path, "m.gif", save_all=True, append_images=frames[1:])
    with Image.open(path) as gif:
        assert gif.n_frames == 2
    rgb = images.open_rgb(path)
    assert rgb.shape == (3, 5, 3) and tuple(rgb[1, 1]) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = img.getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise on display
    rgb = images.open_rgb(_save(img, tmp_path, "r.jpg", exif=exif, quality=95))
    assert rgb.shape == (40, 20, 3)
    assert rgb[2, 10, 2] > 200 and rgb[37, 10, 0] > 200  # the blue strip is now on top


# ---- draft ---------------------------------------------------------------------------

def test_draft_decodes_jpeg_smaller_but_not_below_the_request():
    data = _bytes(Image.new("RGB", (800, 600), (90, 90, 90)), "JPEG")
    assert images.decode_rgb(data).shape == (600, 800, 3)
    small = images.decode_rgb(data, draft=(100, 100))
    assert small.shape[0] < 600 and small.shape[0] >= 100 and small.shape[1] >= 100
    png = _bytes(Image.new("RGB", (800, 600)), "PNG")
    assert images.decode_rgb(png, draft=(100, 100)).shape == (600, 800, 3)  # JPEG only


def test_draft_accounts_for_exif_rotation():
    img = Image.new("RGB", (800, 400), (90, 90, 90))
    exif = img.getexif()
    exif[0x0112] = 6  # displayed 400 wide x 800 tall
    data = _bytes(img, "JPEG", exif=exif)
    rgb = images.decode_rgb(data, draft=(100, 200))  # want at least 100 tall, 200 wide
    assert rgb.shape[0] >= 100 and rgb.shape[1] >= 200
    assert rgb.shape[0] < 800  # and it was still drafted


# ---- rejections ----------------------------------------------------------------------

def test_empty_file(tmp_path):
    (tmp_path / "z.png").write_bytes(b"")
    with pytest.raises(ImageError) as e:
        images.open_rgb(tmp_path / "z.png")
    assert _reason(e).startswith("empty file") and e.value.path.endswith("z.png")


def test_not_an_image(tmp_path):
    junk = b"\x00\x00\x00\x01Bud1" + np.random.default_rng(0).bytes(256)
    (tmp_path / ".DS_Store").write_bytes(junk)
    with pytest.raises(ImageError) as e:
        images.open_rgb(tmp_path / ".DS_Store")
    assert _reason(e).startswith("not an image")


@pytest.fixture(params=["pillow", "simplejpeg"])
def jpeg_decoder(request, monkeypatch):
    if request.param == "simplejpeg":
        pytest.importorskip("simplejpeg")
    monkeypatch.setattr(images, "JPEG_DECODER", request.param)
    return request.param


def _noise_jpeg(size, mode="RGB", **kw):
    rng = np.random.default_rng(1)
    h, w = size
    a = rng.integers(0, 255, (h, w, 3) if mode == "RGB" else (h, w), np.uint8)
    # smooth it a little, as a micrograph is: pure noise is all high frequencies
    img = Image.fromarray(a, mode).resize((w // 4, h // 4)).resize((w, h), Image.BICUBIC)
    return _bytes(img, "JPEG", quality=90, **kw)


@pytest.mark.parametrize("mode, kw", [("RGB", {}), ("L", {}), ("RGB", {"progressive": True}),
                                      ("RGB", {"subsampling": 0})])
def test_both_jpeg_decoders_give_the_same_pixels_at_every_draft_scale(mode, kw, monkeypatch):
    pytest.importorskip("simplejpeg")
    data = _noise_jpeg((239, 321), mode, **kw)  # odd sizes: rounding of scaled sizes
    for draft in [None, (120, 160), (119, 161), (60, 80), (29, 40), (10, 10), (1000, 1000)]:
        out = {}
        for decoder in ("pillow", "simplejpeg"):
            monkeypatch.setattr(images, "JPEG_DECODER", decoder)
            out[decoder] = images.decode_rgb(data, draft=draft)
        assert out["pillow"].shape == out["simplejpeg"].shape, draft
        assert out["simplejpeg"].dtype == np.uint8 and not out["simplejpeg"].flags.writeable
        np.testing.assert_array_equal(out["pillow"], out["simplejpeg"], err_msg=str(draft))


def test_exif_rotated_jpeg_is_upright_with_either_decoder(jpeg_decoder):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))
    exif = img.getexif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise on display
    rgb = images.decode_rgb(_bytes(img, "JPEG", exif=exif, quality=95))
    assert rgb.shape == (40, 20, 3)
    assert rgb[37, 10, 2] > 200 and rgb[2, 10, 0] > 200  # the blue strip is now at the bottom


def test_xmp_rotated_jpeg_is_upright_with_either_decoder(jpeg_decoder):
    # No EXIF block: Pillow takes the orientation from XMP's tiff:Orientation instead.
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
           b'tiff:Orientation="8"/></rdf:RDF></x:xmpmeta>')
    rgb = images.decode_rgb(_bytes(img, "JPEG", xmp=xmp, quality=95))
    assert rgb.shape == (40, 20, 3)
    assert rgb[37, 10, 2] > 200 and rgb[2, 10, 0] > 200


def test_plain_jpeg_is_decoded_without_pillow(monkeypatch):
    pytest.importorskip("simplejpeg")
    monkeypatch.setattr(images, "JPEG_DECODER", "simplejpeg")
    plain = _noise_jpeg((48, 64))
    exif = Image.new("RGB", (64, 48)).getexif()
    exif[0x0112] = 1  # an EXIF block (upright): Pillow reads it
    tagged = _noise_jpeg((48, 64), exif=exif)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(images.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    a, b = images.decode_rgb(plain), images.decode_rgb(tagged)
    assert len(opened) == 1  # only the file with EXIF went through Pillow's header parse
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ImageError, match=r"image too large \(64 x 48 = 3072 pixels > limit 3000\)"):
        images.decode_rgb(plain, max_pixels=3000)  # the size limit holds on this path too


def _pillow_rgb(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_decode_into_a_given_array(monkeypatch):
    pytest.importorskip("simplejpeg")
    data = _noise_jpeg((239, 321))
    for decoder in ("simplejpeg", "pillow"):
        monkeypatch.setattr(images, "JPEG_DECODER", decoder)
        for draft in [None, (120, 161), (60, 80), (29, 40)]:
            expected = images.decode_rgb(data, draft=draft)
            out = np.zeros(expected.shape, np.uint8)
            got = images.decode_rgb(data, draft=draft, out=out)
            np.testing.assert_array_equal(got, expected)
            # simplejpeg writes into it; Pillow returns its own array and leaves it alone
            assert (got is out) == (decoder == "simplejpeg") and out.any() == (decoder == "simplejpeg")
        wrong = np.zeros((10, 10, 3), np.uint8)
        assert images.decode_rgb(data, out=wrong).shape == (239, 321, 3) and not wrong.any()
        strided = np.zeros((239, 642, 3), np.uint8)[:, ::2]  # right shape, not contiguous
        np.testing.assert_array_equal(images.decode_rgb(data, out=strided), _pillow_rgb(data))
        assert not strided.any()


def test_truncated_jpeg(jpeg_decoder):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    data = _bytes(Image.fromarray(noise), "JPEG")
    with pytest.raises(ImageError) as e:
        images.decode_rgb(data[: len(data) // 2], "cut.jpg")
    assert _reason(e).startswith("truncated or corrupt image (")
    assert str(e.value).startswith("cut.jpg: ")


def test_too_large_is_refused_from_the_header(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    path = _save(Image.new("RGB", (3000, 3000)), tmp_path, "big.png")
    with pytest.raises(ImageError) as e:
        images.open_rgb(path, max_pixels=1_000_000)
    assert _reason(e) == ("image too large (3000 x 3000 = 9000000 pixels > limit 1000000); "
                          "raise --max-pixels if it is genuine")
    # Decided before decoding: a header promising 9 MP with no pixel data is "too large".
    data = path.read_bytes()
    with pytest.raises(ImageError, match="image too large"):
        images.decode_rgb(data[:100], max_pixels=1_000_000)
    assert images.open_rgb(path).shape == (3000, 3000, 3)  # the default limit lets it in
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's global state is untouched


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError) as e:
        images.open_rgb(tmp_path / "missing.png")
    assert _reason(e) == "file not found" and e.value.path.endswith("missing.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError) as e:
        images.read_image(tmp_path / "dir.png")
    assert _reason(e).startswith("cannot read file (")


# ---- hashing, resizing, names --------------------------------------------------------

def test_sha1_is_of_the_raw_bytes(tmp_path):
    path = _save(Image.new("RGB", (8, 6), (1, 2, 3)), tmp_path, "x.png")
    raw = path.read_bytes()
    rgb, sha1 = images.read_image(path)
    assert sha1 == hashlib.sha1(raw).hexdigest() == images.sha1_bytes(raw) == images.file_sha1(path)
    assert rgb.shape == (6, 8, 3) and tuple(rgb[0, 0]) == (1, 2, 3)
    big = tmp_path / "big.bin"  # more than one 1 MiB chunk
    big.write_bytes(bytes(range(256)) * 9000)
    assert images.file_sha1(big) == hashlib.sha1(big.read_bytes()).hexdigest()


def test_resize_rgb():
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:, 4:] = 255
    small = images.resize_rgb(rgb, (3, 4))
    assert small.shape == (3, 4, 3) and small.dtype == np.uint8
    assert small[0, 0, 0] < 50 and small[0, 3, 0] > 200  # left stays dark, right bright
    assert images.resize_rgb(rgb, (12, 10), "nearest").shape == (12, 10, 3)
    assert images.resize_rgb(rgb, (6, 8)) is rgb
    with pytest.raises(ValueError, match="resample"):
        images.resize_rgb(rgb, (3, 4), "sharpest")


@pytest.mark.parametrize("name,expected", [
    ("a.JPG", True), ("b.jpeg", True), ("c.Png", True), ("d.TIFF", True), ("e.webp", True),
    ("dir/f.gif", True), ("g.bmp", True), (".DS_Store", False), ("Thumbs.db", False),
    ("notes.txt", False), ("png", False), ("x.png.txt", False),
])
def test_is_image_name(name, expected):
    assert images.is_image_name(name) is expected
