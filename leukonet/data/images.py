"""Open one image safely (EXIF, modes, size limit) → RGB uint8.

Every reader in leukonet (manifest builder, loader, predict) goes through ``decode_rgb``
so a file is either an ``(H, W, 3)`` uint8 array or an ``ImageError`` with a reason a
user can act on, never a bare Pillow traceback. Nothing here touches Pillow's global
state (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``), and the warnings filters only
once, at import (below), so it is safe to call from the manifest builder's and loader's
worker threads.
"""
import hashlib
import io
import struct
import threading
import warnings
from pathlib import PurePath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from leukonet.errors import ImageError
from leukonet.io import file_digest

# Pillow warns (DecompressionBombWarning) when it opens an image over ~89 MP, before our own
# limit (--max-pixels, 40 MP by default) rejects it with a reason: one filter, added once
# at import (thread-safe, unlike catch_warnings around each open), keeps the console to
# that reason. Over ~179 MP Pillow raises instead, and decode_rgb words that too.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

try:
    # JPEG decoding straight into numpy through libjpeg-turbo's TurboJPEG API: the loader
    # is 1.7x faster with it at 240x320 (benchmarks/loader.py), pixel-identical to Pillow
    # (tests/data/test_images.py). Pillow still reads every header
    # and decodes everything else (other formats, EXIF-rotated, CMYK JPEGs).
    import simplejpeg as _simplejpeg
except ImportError:  # an install without its wheel: Pillow decodes everything
    _simplejpeg = None

# "simplejpeg" (when installed) or "pillow"; benchmarks/loader.py switches it to compare.
JPEG_DECODER = "simplejpeg" if _simplejpeg is not None else "pillow"

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: far above any microscope crop, far below a bomb
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
             "lanczos": Image.Resampling.LANCZOS}
_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# What Pillow raises on damaged data: truncated streams give OSError, broken headers and
# tag tables give SyntaxError/ValueError/struct.error/IndexError/KeyError depending on plugin.
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error)


def is_image_name(name) -> bool:
    """Whether a file name has one of ``IMAGE_SUFFIXES`` (any case)."""
    return PurePath(str(name)).suffix.lower() in IMAGE_SUFFIXES


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def file_sha1(path) -> str:
    """Hex SHA-1 of a file, read in 1 MiB chunks."""
    return file_digest(path, "sha1")


# Files decoded from a mode other than RGB, by mode: {mode: {file name}}. Each command that
# reads images says once how many it converted (``conversion_note``).
_CONVERTED = {}
_CONVERTED_LOCK = threading.Lock()
_MODE_WORDS = {"L": "greyscale", "1": "black-and-white", "P": "palette", "CMYK": "CMYK",
               "YCbCr": "YCbCr", "F": "32-bit float greyscale (clipped to 0-255)"}


def _record(mode, name):
    with _CONVERTED_LOCK:
        _CONVERTED.setdefault(mode, set()).add(name)


def converted_files():
    """A snapshot ``{mode: set of file names}`` of the conversions so far (pass it to
    ``conversion_note`` to report those since)."""
    with _CONVERTED_LOCK:
        return {mode: set(names) for mode, names in _CONVERTED.items()}


def conversion_note(since=None):
    """One line on the images converted to RGB since the snapshot ``since`` ('' if none)."""
    since = since or {}
    parts = []
    for mode, names in sorted(converted_files().items()):
        n = len(names - since.get(mode, set()))
        if not n:
            continue
        if mode in _SIXTEEN_BIT:
            what = f"16-bit greyscale ({mode}, scaled to 8 bits)"
        elif mode in _ALPHA_MODES or mode == "P+transparency":
            what = f"with transparency ({mode}: composited over white)"
        else:
            what = _MODE_WORDS.get(mode, mode)
        parts.append(f"{n} {what}")
    return ("converted to RGB: " + ", ".join(parts)) if parts else ""


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _to_rgb(img: Image.Image, name="<bytes>") -> Image.Image:
    """Any Pillow mode → RGB, recorded by mode (``conversion_note``). Alpha is composited
    over white, a smear's background: over black, a half-transparent cell looked like a
    half-dark one. 16-bit greyscale keeps its top 8 bits (scaled, not clipped)."""
    if img.mode != "RGB":
        _record("P+transparency" if img.mode == "P" and "transparency" in img.info else img.mode,
                name)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in _SIXTEEN_BIT:
        # Keep the top 8 bits: Pillow's convert("L") clips 16-bit values at 255 instead.
        a = np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8
        img = Image.fromarray(a.astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0, 255)
        img = Image.fromarray(a.astype(np.uint8), "L")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img if img.mode == "RGB" else img.convert("RGB")  # CMYK, L, 1, P, YCbCr, ...


def decode_rgb(data: bytes, name: str = "<bytes>", max_pixels=DEFAULT_MAX_PIXELS,
               draft=None, out=None) -> np.ndarray:
    """Decode image bytes to a read-only ``(H, W, 3)`` uint8 array, EXIF orientation applied.

    Multi-frame files (GIF, TIFF) give their first frame. ``draft=(h, w)`` lets Pillow
    decode a JPEG at a reduced scale no smaller than that (in display orientation).
    ``out``: a writable C-contiguous uint8 array that a JPEG decoded by simplejpeg to
    exactly its shape is written into, and returned (the loader decodes straight into its
    batch); any other image comes back as a new array, as without ``out``.
    Raises ``ImageError(name, reason)``.
    """
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    try:
        if JPEG_DECODER == "simplejpeg" and _is_plain_jpeg(data):
            # No Pillow at all: its header parse and EXIF lookup cost a third of a JPEG
            # decode and hold the GIL, so the loader's threads queued on them.
            try:
                height, width, colorspace, _ = _simplejpeg.decode_jpeg_header(data)
            except ValueError:
                colorspace = None  # a header simplejpeg rejects: Pillow judges (and words) it
            if colorspace in ("YCbCr", "Gray"):  # Pillow's "RGB" and "L" (CMYK goes to Pillow)
                _check_size(name, width, height, max_pixels)
                if colorspace == "Gray":
                    _record("L", name)
                return _decode_jpeg_fast(data, width, height, draft, out)
        img = Image.open(io.BytesIO(data))  # reads the header only
        width, height = img.size
        _check_size(name, width, height, max_pixels)  # before decoding a single pixel
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1) if img.format == "JPEG" else None
        if JPEG_DECODER == "simplejpeg" and orientation == 1 and img.mode in ("RGB", "L"):
            if img.mode == "L":
                _record("L", name)
            return _decode_jpeg_fast(data, width, height, draft, out)
        if draft is not None and img.format == "JPEG":
            h, w = draft
            if orientation in (5, 6, 7, 8):
                h, w = w, h  # stored sideways: the draft size is in stored orientation
            img.draft("RGB", (w, h))
        img.load()  # decode now, inside the try, so truncated data raises here
        return np.asarray(_to_rgb(ImageOps.exif_transpose(img), name), dtype=np.uint8)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own open-time check (past ~179 MP, or ~89 MP when warnings are errors)
        # fires before ours and --max-pixels cannot lift it, so no advice to raise it.
        raise ImageError(name, f"image too large ({e})") from None
    except _CORRUPT as e:
        detail = str(e) or type(e).__name__
        raise ImageError(name, f"truncated or corrupt image ({detail})") from None


def _is_plain_jpeg(data) -> bool:
    """A JPEG (SOI marker) with no EXIF block and no XMP orientation anywhere in it, so
    it is stored upright. Pillow reads orientation from EXIF and, lacking that, from XMP's
    ``tiff:Orientation``; a file mentioning either goes through Pillow. Scanning all bytes
    (microseconds) rather than walking the marker segments can only err towards Pillow."""
    return data[:3] == b"\xff\xd8\xff" and b"Exif\x00\x00" not in data and b"Orientation" not in data


def _check_size(name, width, height, max_pixels):
    if width * height > max_pixels:
        raise ImageError(name, f"image too large ({width} x {height} = {width * height} "
                               f"pixels > limit {max_pixels}); raise --max-pixels if it is "
                               "genuine")


def _decode_jpeg_fast(data, width, height, draft, out=None) -> np.ndarray:
    """An upright RGB/greyscale JPEG via simplejpeg, at Pillow's draft scale: the largest of
    1, 1/2, 1/4, 1/8 that keeps the image at least ``draft`` (so both decoders give the
    same size, and the same pixels)."""
    scale = 1
    if draft is not None:
        h, w = draft
        fit = min(width // max(1, w), height // max(1, h))
        scale = next((s for s in (8, 4, 2, 1) if fit >= s), 1)
    shape = (-(-height // scale), -(-width // scale), 3)
    if (out is not None and out.shape == shape and out.dtype == np.uint8
            and out.flags.c_contiguous and out.flags.writeable):
        _simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=shape[0], min_width=shape[1],
                                buffer=out)
        return out
    rgb = _simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=shape[0],
                                  min_width=shape[1])
    rgb.flags.writeable = False  # like np.asarray of a Pillow image
    return rgb


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except OSError as e:  # IsADirectoryError, PermissionError, I/O errors
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from None


def open_rgb(path, max_pixels=DEFAULT_MAX_PIXELS, draft=None, out=None) -> np.ndarray:
    """``decode_rgb`` of a file; a missing or unreadable file is an ``ImageError`` too."""
    return decode_rgb(_read_bytes(path), str(path), max_pixels, draft, out)


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS, draft=None):
    """``(rgb, sha1)`` from one read of the file; the hash is of the raw bytes."""
    data = _read_bytes(path)
    return decode_rgb(data, str(path), max_pixels, draft), sha1_bytes(data)


def resize_rgb(rgb: np.ndarray, size, resample="bilinear") -> np.ndarray:
    """Resize a uint8 RGB array to ``size = (height, width)``; the input itself if already so."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, not {resample!r}")
    return np.asarray(Image.fromarray(rgb).resize((w, h), _RESAMPLE[resample]))
