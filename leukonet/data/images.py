"""Open one image safely (EXIF, modes, size limit) → RGB uint8.

Every reader in leukonet (manifest builder, loader, predict) goes through ``decode_rgb``
so a file is either an ``(H, W, 3)`` uint8 array or an ``ImageError`` with a reason a
user can act on — never a bare Pillow traceback.
"""
import hashlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from leukonet.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: far above any microscope crop, far below a bomb
_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
             "box": Image.BOX, "lanczos": Image.LANCZOS}


def is_image_name(name) -> bool:
    name = str(name).lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def file_sha1(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → RGB; alpha is composited over black (the rotation fill colour)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit data: keep the top 8 bits (Pillow's convert("L") would clip instead).
        a = np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8
        img = Image.fromarray(a.astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_rgb(data: bytes, name="<bytes>", max_pixels=DEFAULT_MAX_PIXELS, draft=None) -> np.ndarray:
    """Decode image bytes to an ``(H, W, 3)`` uint8 array, EXIF orientation applied.

    ``draft=(h, w)`` lets Pillow decode a JPEG at a reduced scale no smaller than that.
    """
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(name, f"image too large ({width} x {height} = {width * height} "
                                       f"pixels > limit {max_pixels}); raise --max-pixels if it "
                                       "is genuine")
            if draft is not None and img.format == "JPEG":
                img.draft("RGB", (draft[1], draft[0]))
            img.load()  # decodes now, so truncated data raises here
            img = ImageOps.exif_transpose(img)
            return np.asarray(_to_rgb(img), dtype=np.uint8)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(name, f"image too large ({e}); raise --max-pixels if it is genuine") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(name, f"truncated or corrupt image ({e})") from None


def _read_bytes(path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from None


def open_rgb(path, max_pixels=DEFAULT_MAX_PIXELS, draft=None) -> np.ndarray:
    return decode_rgb(_read_bytes(path), str(path), max_pixels, draft)


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS, draft=None):
    """``(rgb, sha1)`` from one read of the file; the hash is of the raw bytes."""
    data = _read_bytes(path)
    return decode_rgb(data, str(path), max_pixels, draft), sha1_bytes(data)


def resize_rgb(rgb: np.ndarray, size, resample="bilinear") -> np.ndarray:
    """Resize to ``size = (height, width)``; returns the input when already that size."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), _RESAMPLE[resample]))
