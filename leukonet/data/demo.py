"""The synthetic demo data set: procedurally drawn 4-class 'cells' (SYNTHETIC, not real blood).

Each class has its own nucleus shape and cytoplasm colour; each source cell gets its own
stain (a colour cast over the whole image) and is written as several augmented copies
(any-angle rotation with black corners, flips, shear, shift), so the set has families
for the manifest's grouping to find, like the public blood-cells set. It exists for the
built-in main job (`leukonet fit --demo`) and the tests; nothing about it is medical.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from leukonet import io
from leukonet.errors import LeukonetError

DEMO_CLASSES = ("synthetic_eosinophil", "synthetic_lymphocyte", "synthetic_monocyte",
                "synthetic_neutrophil")
_SCALE = 2  # drawn at twice the size, then downsampled: smooth edges like a photo
_README = """SYNTHETIC DEMO DATA made by leukonet (leukonet demo-data / leukonet fit --demo).

These are procedurally drawn cartoons of four white-blood-cell types, NOT real blood
cells and NOT for any medical or scientific claim. Class names carry a "synthetic_"
prefix so they can never be mistaken for real labels.

TRAIN/<class>/ and TEST/<class>/ hold PNGs; each source cell appears as several
augmented copies (a family); families.csv lists which source each file came from.
Parameters: demo.json.
"""


def _cell(rng, label, size):
    """Draw one source cell of class ``label`` as an RGB image (width, height = size)."""
    w, h = size
    tint = rng.uniform(-14, 14) + rng.uniform(-10, 10, 3)  # brightness + a slight hue
    bg = np.clip(np.array([232, 205, 212]) + tint, 0, 255)
    img = Image.new("RGB", (w, h), tuple(int(c) for c in bg))
    draw = ImageDraw.Draw(img)
    rbc = np.clip(np.array([214, 130, 140]) + tint * 0.8, 0, 255)
    for _ in range(int(rng.integers(4, 8))):  # red cells in the background
        r = rng.uniform(0.12, 0.17) * h
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rbc))
    cx = w / 2 + rng.uniform(-0.06, 0.06) * w
    cy = h / 2 + rng.uniform(-0.06, 0.06) * h
    nucleus = tuple(int(c) for c in np.clip(np.array([95, 55, 150]) + rng.uniform(-15, 15, 3), 0, 255))
    if label == "synthetic_lymphocyte":
        r = rng.uniform(0.22, 0.26) * h
        _disc(draw, cx, cy, r, (170, 200, 235))
        _disc(draw, cx + rng.uniform(-2, 2), cy, r * 0.85, nucleus)
    elif label == "synthetic_monocyte":
        r = rng.uniform(0.36, 0.40) * h
        _disc(draw, cx, cy, r, (175, 175, 205))
        _disc(draw, cx, cy, r * 0.62, nucleus, ry=r * 0.52)
        bite = r * 0.35  # a kidney-shaped nucleus: an ellipse with a bite taken out
        _disc(draw, cx + r * 0.45, cy - r * 0.1, bite, (175, 175, 205))
    elif label == "synthetic_eosinophil":
        r = rng.uniform(0.32, 0.36) * h
        _disc(draw, cx, cy, r, (240, 150, 90))
        for _ in range(60):  # orange-red granules
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, r * 0.95)
            _disc(draw, cx + d * np.cos(a), cy + d * np.sin(a), 1.2 * _SCALE, (215, 80, 50))
        for side in (-1, 1):  # bilobed nucleus: two overlapping ellipses
            _disc(draw, cx + side * r * 0.34, cy, r * 0.38, nucleus, ry=r * 0.31)
    else:  # neutrophil: 3-5 small lobes joined by strands in pale lilac cytoplasm
        r = rng.uniform(0.32, 0.36) * h
        _disc(draw, cx, cy, r, (225, 190, 225))
        n = int(rng.integers(3, 6))
        angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, 1.6 * np.pi, n)
        pts = [(cx + r * 0.5 * np.cos(a), cy + r * 0.5 * np.sin(a)) for a in angles]
        draw.line(pts, fill=nucleus, width=int(2 * _SCALE))
        for x, y in pts:
            _disc(draw, x, y, r * 0.2, nucleus)
    img = img.filter(ImageFilter.GaussianBlur(0.8 * _SCALE))
    # Uneven staining: a smooth brightness field. It spreads each colour over several
    # histogram bins, as real stains do; flat colours would sit on a bin edge and let
    # the slightest resampling move a whole region from one bin to the next.
    field = rng.normal(0, 1, (6, 8)).astype(np.float32)
    field = np.asarray(Image.fromarray(field, "F").resize((w, h), Image.BICUBIC))
    gain = rng.uniform(0.88, 1.12, 3)  # the stain of this slide: a per-source colour cast
    arr = np.asarray(img, dtype=np.float32) * gain + 14 * field[..., None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    # The round field of view of a microscope: black outside a central disc. Rotating
    # copies about the centre then keeps every pixel of the cell in frame, as the
    # (much larger) crops of the real set nearly do.
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse([w / 2 - h / 2, 0, w / 2 + h / 2, h], fill=255)
    return Image.composite(img, Image.new("RGB", (w, h)), mask)


def _disc(draw, x, y, r, fill, ry=None):
    ry = r if ry is None else ry
    draw.ellipse([x - r, y - ry, x + r, y + ry], fill=tuple(int(c) for c in fill))


def _augment(img, rng):
    """A copy like the blood-cells set's: any-angle rotation, flips, shear, shift, black fill."""
    # Nearest-neighbour resampling: on images this small, interpolated edge pixels
    # would be a large share of the colour histogram and split families apart.
    w, h = img.size
    shear = rng.uniform(-0.1, 0.1)
    dx, dy = rng.uniform(-0.05, 0.05, 2) * (w, h)
    img = img.transform(img.size, Image.AFFINE, (1, shear, -shear * h / 2 + dx, 0, 1, dy),
                        resample=Image.NEAREST, fillcolor=(0, 0, 0))
    img = img.rotate(float(rng.uniform(0, 360)), resample=Image.NEAREST, fillcolor=(0, 0, 0))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_TOP_BOTTOM)
    return img


def make_demo_data(root, sources_per_class=(24, 6), copies_per_source=5, image_size=(60, 80),
                   seed=0, overwrite=False) -> Path:
    """Write the SYNTHETIC demo set to ``root`` (idempotent); returns ``root``.

    ``root/TRAIN/<class>/*.png`` and ``root/TEST/<class>/*.png``: for each class
    ``sources_per_class = (train, test)`` source cells, each written as
    ``copies_per_source`` augmented copies; ``image_size = (height, width)``.
    """
    root = Path(root)
    _check(sources_per_class, copies_per_source, image_size)
    params = dict(sources_per_class=[int(n) for n in sources_per_class],
                  copies_per_source=int(copies_per_source),
                  image_size=[int(n) for n in image_size], seed=int(seed),
                  classes=list(DEMO_CLASSES))
    stamp = root / "demo.json"
    if root.exists() and not root.is_dir():
        raise LeukonetError(f"{root}: exists and is not a folder; choose another folder")
    if stamp.is_file():
        try:
            same = json.loads(stamp.read_text(encoding="utf-8")) == params
        except (OSError, ValueError):  # unreadable stamp: treat as other settings
            same = False
        if same:
            return root
        if not overwrite:
            raise LeukonetError(f"{root}: holds demo data made with other settings; pass "
                                "overwrite=True (--overwrite) or choose another folder")
    elif root.exists() and any(root.iterdir()):
        raise LeukonetError(f"{root}: exists and is not a leukonet demo folder; choose an empty "
                            "or new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    # Built in a temporary folder beside root and renamed into place: a killed run
    # never leaves a half data set that looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    old = None
    try:
        umask = os.umask(0)  # mkdtemp makes 0700; give root a plain mkdir's permissions
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        rows = _draw_all(tmp, sources_per_class, copies_per_source, image_size, seed)
        io.write_csv(tmp / "families.csv", pd.DataFrame(rows))
        io.write_text(tmp / "README.txt", _README)
        io.write_json(tmp / "demo.json", params)
        if root.exists():  # move the old set aside first: root is never half deleted
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=root.parent))
            root.rename(old / "data")
        tmp.rename(root)
    finally:
        for leftover in (tmp, old):
            if leftover is not None:
                shutil.rmtree(leftover, ignore_errors=True)
    return root


def _check(sources_per_class, copies_per_source, image_size):
    def ints(v, n, low):
        return (len(v) == n and all(isinstance(x, (int, np.integer)) and x >= low for x in v))

    if not ints(tuple(sources_per_class), 2, 0) or sum(sources_per_class) == 0:
        raise LeukonetError(f"sources_per_class={sources_per_class!r}: give two counts "
                            "(train, test) of source cells per class, not both 0")
    if not ints((copies_per_source,), 1, 1):
        raise LeukonetError(f"copies_per_source={copies_per_source!r}: give a whole number >= 1")
    if not ints(tuple(image_size), 2, 16):  # below 16 px the cells are unrecognisable
        raise LeukonetError(f"image_size={image_size!r}: give (height, width), each >= 16")


def _draw_all(out, sources_per_class, copies, image_size, seed):
    h, w = image_size
    big = (w * _SCALE, h * _SCALE)
    rng = np.random.default_rng(seed)
    rows, source = [], 0
    for split, n in zip(("TRAIN", "TEST"), sources_per_class):
        for label in DEMO_CLASSES:
            folder = out / split / label
            folder.mkdir(parents=True)
            for _ in range(n):
                cell = _cell(rng, label, big)
                for c in range(copies):
                    img = cell if c == 0 else _augment(cell, rng)
                    rel = f"{split}/{label}/s{source:03d}_c{c}.png"
                    img.resize((w, h), Image.BOX).save(out / rel)
                    rows.append(dict(path=rel, label=label, split=split, source=source))
                source += 1
    return rows
