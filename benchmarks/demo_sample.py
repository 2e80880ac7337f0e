"""Make the real-cell sample that ships inside the package for ``leukonet fit --demo``.

    python benchmarks/demo_sample.py [--data-root ../shared/datasets/blood-cells/images]

Source: the Kaggle "Blood Cell Images" set (BCCD-derived, MIT), grouped into families
of augmented copies of one source cell by ``data_manifests/blood-cells`` (keypoint-
verified). What goes in (``leukonet/data/sample_blood_cells/``):

- train / val: families of the TRAIN folder (train.csv / val.csv), 12 / 2 per class;
- heldout: families of the official TEST folder (test.csv), up to 10 per class: other
  source cells than any training image (the TEST folder shares no family with TRAIN).

A family is never split between parts. Families hold 12 to 306 copies each (the
monocytes ~155: the original set balanced classes by copying), so whole families would
fit ~10 cells in 5 MB; the sample keeps ``COPIES`` copies of each family instead, chosen
by a fixed seed, so it holds ~90 distinct cells. Images are halved to 160x120 (JPEG
quality 90, Pillow's LANCZOS): the demo's recipe crops around the nucleus (0.83) and
resizes to 96x96, finer than 160x120 holds anyway.
"""
import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "data_manifests" / "blood-cells"
OUT = REPO / "leukonet" / "data" / "sample_blood_cells"
COPIES = {"train": 6, "val": 6, "heldout": 8}
FAMILIES = {"train": 12, "val": 2, "heldout": 10}  # per class, at most
SIZE = (160, 120)
LIMIT = 5 * 1024 * 1024

README = """# A small sample of real white blood cells (for `leukonet fit --demo`)

{n} JPEGs of single white blood cells, 160x120, four classes, in three parts:

| part | what | families (cells) | images |
| --- | --- | --- | --- |
{table}

Each family is one source cell; its images are augmented copies (rotations, flips,
shear) made by the data set's authors. A family lies in one part only, and the
`heldout` cells come from the data set's official TEST folder, which shares no source
cell with TRAIN: the demo's held-out accuracy is measured on cells it never saw.
`train.csv`, `val.csv`, `heldout.csv` are leukonet manifests (path relative to
`images/`, label, sha1, size, split, group = family).

Made by `python benchmarks/demo_sample.py` from `data_manifests/blood-cells` (seed 0):
{copies} copies of each family (families hold 12-306 copies: whole families would
fit ~10 cells in 5 MB), halved from 320x240 (Pillow LANCZOS, JPEG quality 90).

## Source, licence and attribution

From the "Blood Cell Images" data set (Paul Mooney, Kaggle,
https://www.kaggle.com/datasets/paultimothymooney/blood-cells), augmented crops of
the BCCD data set (https://github.com/Shenggan/BCCD_Dataset), both released under the
MIT licence:

```
MIT License

Copyright (c) 2017 Shenggan

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
```

Not for diagnosis: a teaching sample of ~90 cells.
"""


def pick(seed=0):
    """The sample's rows: one frame with part, path (source), label, group."""
    rng = np.random.default_rng(seed)
    sources = {"train": ["train"], "val": ["val"], "heldout": ["test"]}
    used, rows = set(), []
    for part, files in sources.items():
        frame = pd.concat([pd.read_csv(MANIFESTS / f"{f}.csv") for f in files])
        pure = frame.groupby("group")["label"].nunique()
        frame = frame[frame["group"].map(pure) == 1]
        for label in sorted(frame["label"].unique()):
            groups = sorted(set(frame.loc[frame["label"] == label, "group"]) - used)
            groups = [g for g in groups if (frame["group"] == g).sum() >= COPIES[part]]
            chosen = rng.permutation(groups)[:FAMILIES[part]]
            for g in chosen:
                used.add(g)
                members = frame[frame["group"] == g].sort_values("path")
                take = members.iloc[np.sort(rng.choice(len(members), COPIES[part], replace=False))]
                rows += [dict(part=part, source=r.path, label=label, group=int(g))
                         for r in take.itertuples()]
    return pd.DataFrame(rows)


def write(rows, data_root, out=OUT):
    if out.exists():
        shutil.rmtree(out)
    images = out / "images"
    classes = sorted(rows["label"].unique())
    split_of = {"train": "train", "val": "val", "heldout": "test"}
    for part, frame in rows.groupby("part", sort=False):
        records = []
        for r in frame.itertuples():
            rel = f"{part}/{r.label}/{Path(r.source).stem}.jpeg"
            dest = images / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(Path(data_root) / r.source) as im:
                im.convert("RGB").resize(SIZE, Image.LANCZOS).save(dest, "JPEG", quality=90)
            records.append(dict(path=rel, label=r.label, label_index=classes.index(r.label),
                                sha1=hashlib.sha1(dest.read_bytes()).hexdigest(), width=SIZE[0],
                                height=SIZE[1], split=split_of[part], group=r.group))
        # leukonet's manifest columns (data/manifest.py COLUMNS): families kept from the source
        pd.DataFrame(records).to_csv(out / f"{part}.csv", index=False)
    table = "\n".join(
        f"| `{p}` | {dict(train='fine-tuning', val='choosing the epoch', heldout='the held-out score')[p]} "
        f"| {f['group'].nunique()} | {len(f)} |" for p, f in rows.groupby("part", sort=False))
    (out / "README.md").write_text(README.format(n=len(rows), table=table, copies="/".join(
        f"{v} ({k})" for k, v in COPIES.items())), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return size


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets" / "blood-cells" / "images"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not Path(args.data_root).is_dir():
        sys.exit(f"{args.data_root}: the blood-cells images are not there; pass --data-root")
    rows = pick(args.seed)
    size = write(rows, args.data_root)
    summary = rows.groupby(["part", "label"]).agg(families=("group", "nunique"), images=("source", "size"))
    print(summary.to_string())
    print(f"{len(rows)} images, {size / 1e6:.2f} MB -> {OUT.relative_to(REPO)}")
    if size > LIMIT:
        sys.exit(f"the sample is {size / 1e6:.2f} MB, over the 5 MB limit: lower COPIES or FAMILIES")
    print(json.dumps({"images": len(rows), "bytes": size}))


if __name__ == "__main__":
    main()
