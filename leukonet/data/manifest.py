"""Manifest: the labelled, de-duplicated, family-grouped image list every run starts from.

A manifest is a pandas DataFrame with one row per image (``COLUMNS``), saved as CSV
with a ``classes.json`` sidecar (the class order behind ``label_index``) and a
``<name>.rejects.csv`` listing every file left out and why. Operations return new
manifests, so a notebook can chain ``Manifest.from_folder(root).dedup().group()``.
"""
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from leukonet import io
from leukonet.data import families, images, scan
from leukonet.errors import ImageError, LeukonetError

COLUMNS = ["path", "label", "label_index", "sha1", "width", "height", "split", "group"]
REJECT_COLUMNS = ["path", "label", "split", "kind", "reason"]
CONFLICT_POLICIES = ("drop", "first")
_TEST_SPLIT_NAMES = {"test", "testing"}
LARGE_FAMILY = 0.01  # share of the images above which a family is reported at build
_FAMILY_WARNINGS = ("warning: large families: ", "warning: families hold several labels: ",
                    "warning: too few families: ")


def _workers(workers=None):
    # Pillow releases the GIL while decoding, so threads overlap the decode work.
    return workers or min(8, 2 * (os.cpu_count() or 1))


def read_rows(root, paths, max_pixels=images.DEFAULT_MAX_PIXELS, workers=None, progress=None):
    """Read every image once: (sha1, width, height, descriptor) or the ImageError.

    Yields results in ``paths`` order; memory stays bounded to one image per worker.
    """

    def one(rel):
        try:
            rgb, sha1 = images.read_image(scan.resolve(root, rel), max_pixels=max_pixels)
        except ImageError as e:
            return e
        return sha1, rgb.shape[1], rgb.shape[0], families.describe(rgb).astype(np.float16)

    with ThreadPoolExecutor(_workers(workers)) as pool:
        for i, result in enumerate(pool.map(one, paths, chunksize=16)):
            # The last call comes before the last yield: a caller zipping this with its own
            # list stops there and never resumes the generator past it.
            if progress and ((i + 1) % 500 == 0 or i + 1 == len(paths)):
                progress(i + 1, len(paths))
            yield result


class Manifest:
    """One row per image; see ``COLUMNS``. Build with ``from_folder``/``from_labels_csv``
    or load with ``read_csv``."""

    def __init__(self, frame, root=None, classes=None, rejects=None, notes=None, features=None):
        frame = frame.reset_index(drop=True)
        self.classes = list(classes) if classes is not None else sorted(frame["label"].unique())
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(frame["label"]) - set(index))
        if unknown:
            raise LeukonetError(f"labels {unknown} are not in the class list {self.classes}")
        frame["label_index"] = frame["label"].map(index).astype(int)
        for column in COLUMNS:
            if column not in frame:
                frame[column] = pd.NA
        self.frame = frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]
        self.root = Path(root) if root is not None else None
        self.rejects = rejects if rejects is not None else pd.DataFrame(columns=REJECT_COLUMNS)
        self.notes = list(notes or [])
        self._features = features

    # ---- building ---------------------------------------------------------------
    @classmethod
    def from_folder(cls, root, splits=None, max_pixels=images.DEFAULT_MAX_PIXELS, workers=None,
                    progress=None):
        """Read a ``ROOT/<class>/`` or ``ROOT/<split>/<class>/`` tree (not yet de-duplicated)."""
        return cls._from_scan(root, scan.scan_folder(root, splits), max_pixels, workers, progress)

    @classmethod
    def from_labels_csv(cls, root, labels_csv, path_column, label_column, label_map=None,
                        path_format=None, max_pixels=images.DEFAULT_MAX_PIXELS, workers=None,
                        progress=None):
        """Read the images a labels CSV names, paths relative to ``root``."""
        result = scan.scan_labels_csv(root, labels_csv, path_column, label_column, label_map,
                                      path_format)
        return cls._from_scan(root, result, max_pixels, workers, progress)

    @classmethod
    def _from_scan(cls, root, result, max_pixels, workers, progress):
        rows, feats, rejects = [], [], list(result.rejects)
        paths = [c.path for c in result.candidates]
        since = images.converted_files()
        for c, got in zip(result.candidates, read_rows(root, paths, max_pixels, workers, progress)):
            if isinstance(got, ImageError):
                rejects.append(dict(path=c.path, label=c.label, split=c.split or "", reason=got.reason))
                continue
            sha1, width, height, feature = got
            rows.append(dict(path=c.path, label=c.label, sha1=sha1, width=width, height=height,
                             split=c.split))
            feats.append(feature)
        if not rows:
            raise LeukonetError(f"{root}: none of the {len(paths)} files is a readable image")
        rejects = pd.DataFrame(rejects, columns=["path", "label", "split", "reason"])
        rejects.insert(3, "kind", "rejected")
        frame = pd.DataFrame(rows)
        if frame["split"].isna().all():
            frame = frame.drop(columns="split")
        converted = images.conversion_note(since)
        return cls(frame, root=root, rejects=rejects,
                   notes=list(result.notes) + ([converted] if converted else []),
                   features=np.stack(feats))

    @classmethod
    def read_csv(cls, path, root=None):
        """Load a manifest CSV (and its ``classes.json``); validates columns and indices."""
        path = Path(path)
        if not path.is_file():
            raise LeukonetError(f"{path}: manifest not found")
        try:
            frame = pd.read_csv(path, dtype={"path": str, "label": str, "sha1": str, "split": str},
                                keep_default_na=False, na_values={"group": [""]})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise LeukonetError(f"{path}: not a readable CSV ({e})") from None
        missing = [c for c in ("path", "label") if c not in frame]
        if missing:
            raise LeukonetError(
                f"{path}: not a leukonet manifest (no column {', '.join(missing)}); build one "
                "with `leukonet manifest build`"
            )
        classes = None
        sidecar = path.parent / "classes.json"
        if sidecar.is_file():
            classes = json.loads(sidecar.read_text(encoding="utf-8"))["classes"]
            if not set(frame["label"]) <= set(classes):
                classes = None  # a sidecar from another manifest in the same folder
        source = "in classes.json" if classes is not None else "on the other rows"
        if classes is None and "label_index" in frame:
            pairs = frame[["label_index", "label"]].drop_duplicates().sort_values("label_index")
            # Only indices 0..k-1 spell out a class list; a subset that lacks a class (gaps)
            # keeps its labels, and evaluate/fit map labels to a run's classes by name.
            if list(pairs["label_index"]) == list(range(len(pairs))):
                classes = list(pairs["label"])
        if classes is not None and "label_index" in frame:
            expected = frame["label"].map({c: i for i, c in enumerate(classes)})
            bad = np.flatnonzero(expected.to_numpy() != frame["label_index"].to_numpy())
            if len(bad):
                row = bad[0] + 2
                raise LeukonetError(
                    f"{path}:{row}: label_index {frame['label_index'].iloc[bad[0]]} does not "
                    f"match label {frame['label'].iloc[bad[0]]!r} {source}"
                )
        if "split" in frame and (frame["split"] == "").all():
            frame = frame.drop(columns="split")
        return cls(frame, root=root, classes=classes)

    # ---- saving -----------------------------------------------------------------
    def to_csv(self, path, overwrite=False, rejects=True):
        """Write the manifest, ``classes.json`` beside it and ``<name>.rejects.csv``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise LeukonetError(f"{path}: exists; pass --overwrite (overwrite=True) to replace it")
        frame = self.frame
        if frame["split"].isna().all():
            frame = frame.drop(columns="split")
        if frame["group"].notna().all():
            frame = frame.assign(group=frame["group"].astype(int))
        sidecar = path.parent / "classes.json"
        if sidecar.exists() and not overwrite:
            old = json.loads(sidecar.read_text(encoding="utf-8")).get("classes")
            if old != self.classes:
                raise LeukonetError(
                    f"{sidecar}: holds other classes ({old}); write this manifest to another "
                    "folder or pass --overwrite"
                )
        io.write_csv(path, frame)
        io.write_json(sidecar, {"classes": self.classes})
        if rejects:
            io.write_csv(self.rejects_path(path), self.rejects)
        return path

    @staticmethod
    def rejects_path(path):
        path = Path(path)
        return path.with_name(path.stem + ".rejects.csv")

    # ---- basic views ------------------------------------------------------------
    def __len__(self):
        return len(self.frame)

    def __repr__(self):
        groups = self.frame["group"].nunique() if self.has_groups else "?"
        return (f"<Manifest {len(self)} images, {len(self.classes)} classes, {groups} families"
                f"{', root=' + str(self.root) if self.root else ''}>")

    @property
    def has_groups(self):
        return bool(len(self)) and self.frame["group"].notna().all()

    @property
    def has_splits(self):
        return bool(len(self)) and self.frame["split"].notna().all()

    def _take(self, positions, **changes):
        """A manifest of the rows at ``positions`` (features follow), same classes."""
        positions = np.asarray(positions, dtype=int)
        feats = self._features[positions] if self._features is not None else None
        kwargs = dict(root=self.root, classes=self.classes, rejects=self.rejects,
                      notes=list(self.notes), features=feats)
        kwargs.update(changes)
        return Manifest(self.frame.iloc[positions].copy(), **kwargs)

    def features(self, max_pixels=images.DEFAULT_MAX_PIXELS, workers=None):
        """Family descriptors of every row (read from ``root`` once, then cached)."""
        if self._features is None:
            if self.root is None:
                raise LeukonetError(
                    "this manifest was loaded without a data root, so its images cannot be "
                    "read; pass the data root (--root for `manifest` commands, --data-root "
                    "for the others)"
                )
            feats = []
            for rel, got in zip(self.frame["path"], read_rows(self.root, list(self.frame["path"]),
                                                             max_pixels, workers)):
                if isinstance(got, ImageError):
                    raise LeukonetError(f"{got}; run `leukonet manifest check` to list all problems")
                feats.append(got[3])
            self._features = np.stack(feats) if feats else np.zeros((0, families.DESCRIPTOR_DIM))
        return self._features

    def image_reader(self):
        """``read(row) -> RGB uint8 array`` of one row's image under ``root``."""
        if self.root is None:
            raise LeukonetError("this step reads the images: pass the data root (the folder the "
                                "manifest paths are relative to: --root for `manifest` "
                                "commands, --data-root for the others)")

        def read(row):
            path = scan.resolve(self.root, self.frame["path"].iat[row], row=row + 2)
            try:
                return images.open_rgb(path)  # no hash: read_image's SHA-1 is not needed
            except ImageError as e:
                raise LeukonetError(f"{e}; run `leukonet manifest check`") from None

        return read

    # ---- operations -------------------------------------------------------------
    def dedup(self, on_conflict="drop"):
        """Drop exact duplicates (same sha1).

        Within one label the first copy (in path order) is kept. The same content under
        two labels is a labelling conflict: ``on_conflict="drop"`` (default) excludes
        every copy, ``"first"`` keeps the first. Dropped rows go to ``rejects``.
        """
        if on_conflict not in CONFLICT_POLICIES:
            raise LeukonetError(f"on_conflict must be one of {CONFLICT_POLICIES}, not {on_conflict!r}")
        frame = self.frame
        first = frame.groupby("sha1", sort=False)["path"].transform("first")
        labels_per_hash = frame.groupby("sha1", sort=False)["label"].transform("nunique")
        conflict = labels_per_hash > 1
        keep = ~frame["sha1"].duplicated()
        if on_conflict == "drop":
            keep &= ~conflict
        dropped = frame[~keep]
        reason = np.where(
            conflict[~keep],
            "same content under labels " + frame.loc[~keep, "sha1"].map(
                frame.groupby("sha1")["label"].agg(lambda s: ", ".join(sorted(set(s))))
            ) + " (as " + first[~keep] + ")",
            "duplicate of " + first[~keep],
        )
        kind = np.where(conflict[~keep], "conflict", "duplicate")
        new = pd.DataFrame(dict(path=dropped["path"], label=dropped["label"],
                                split=dropped["split"].fillna(""), kind=kind, reason=reason))
        rejects = pd.concat([self.rejects, new], ignore_index=True) if len(new) else self.rejects
        return self._take(np.flatnonzero(keep.to_numpy()), rejects=rejects, classes=None)

    def group(self, threshold=families.DEFAULT_THRESHOLD, keypoints=False,
              min_inliers=None, progress=None, workers=None):
        """Fill ``group``: families of near-duplicate (augmented) copies.

        Colour-histogram neighbours within ``threshold`` are linked only where keypoints
        show the two images to be one picture (``same_cell``: reads the images under
        ``root``). With ``keypoints``, families that show the same field of view (shifted
        copies whose colour histograms differ) are then merged: ``link_fields``.
        ``progress(done, total)`` follows the pairs as they are verified.
        """
        from leukonet.data import same_cell

        out = self._take(np.arange(len(self)))
        groups, stats = same_cell.verified_groups(
            self.features().astype(np.float32), self.image_reader(), threshold,
            workers=workers, progress=progress)
        out.frame["group"] = groups
        out.notes.append(stats.note(threshold))
        if keypoints:
            return out.link_fields(min_inliers)
        return out._warn_split_spans()._warn_families()
    def link_fields(self, min_inliers=None, progress=None):
        """Merge families that show the same field of view, by SIFT keypoints matched
        between them (``keypoint_links``, OpenCV); needs ``group`` filled.
        ``progress(done, total)`` follows the families as they are read."""
        from leukonet.data import keypoint_links

        if "group" not in self.frame or self.frame["group"].isna().any():
            raise LeukonetError("link_fields merges families: call group() first")
        out = self._take(np.arange(len(self)))
        groups = out.frame["group"].to_numpy()
        links = keypoint_links.link_groups(
            groups, self.image_reader(),
            min_inliers=(keypoint_links.DEFAULT_MIN_INLIERS if min_inliers is None
                         else min_inliers), progress=progress)
        merged = keypoint_links.merge(groups, links)
        out.notes.append(f"keypoint links: {len(links)} pairs of families show the same "
                         f"field; {len(np.unique(groups))} families -> "
                         f"{len(np.unique(merged))}")
        out.frame["group"] = merged
        return out._warn_split_spans()._warn_families()

    def _warn_split_spans(self):
        # link_fields after group: the merged families replace the earlier count
        self.notes = [n for n in self.notes if "families span split folders" not in n]
        if self.has_splits:
            spans = self.frame.groupby("group")["split"].nunique()
            if (spans > 1).any():
                self.notes.append(
                    f"warning: {int((spans > 1).sum())} families span split folders "
                    f"({', '.join(sorted(self.frame['split'].unique()))}): copies of one cell "
                    "are on both sides; run `leukonet manifest audit`"
                )
        return self

    def _warn_families(self):
        """Notes on families that a split cannot place well: one holding over
        ``LARGE_FAMILY`` of the images, or several labels."""
        # a later grouping step (link_fields after group) replaces these notes
        self.notes = [n for n in self.notes if not n.startswith(_FAMILY_WARNINGS)]
        frame = self.frame
        sizes = frame["group"].value_counts()
        large = sizes[sizes > max(LARGE_FAMILY * len(frame), 1)]
        if len(large) and len(frame) >= 100:  # on a handful of images any family is large
            g, n = large.index[0], int(large.iloc[0])
            example = frame.loc[frame["group"] == g, "path"].iloc[0]
            self.notes.append(
                f"{_FAMILY_WARNINGS[0]}{len(large)} families hold over {LARGE_FAMILY:.0%} of the "
                "images each "
                f"(largest: family {g}, {n} images, {n / len(frame):.1%}, e.g. {example}): "
                "splits of whole families may miss their fractions (`leukonet manifest split` "
                "says by how much); many copies of one cell, or links that glue cells: look "
                "at the largest")
        per_class = frame.groupby("label")["group"].nunique()
        for label, n in per_class[per_class < 3].items():  # train, val and test need 3
            self.notes.append(
                f"{_FAMILY_WARNINGS[2]}class {label} has {n} famil{'y' if n == 1 else 'ies'} "
                f"({int((frame['label'] == label).sum())} images): it cannot be in every split "
                "(train, val, test); add images of it, or drop it from the manifest")
        labels = frame.groupby("group")["label"].nunique()
        mixed = labels[labels > 1]
        if len(mixed):
            rows = frame[frame["group"].isin(mixed.index)]
            first = rows[rows["group"] == mixed.index[0]]
            counts = ", ".join(f"{k} {v}" for k, v in first["label"].value_counts().items())
            self.notes.append(
                f"{_FAMILY_WARNINGS[1]}{len(mixed)} families, {len(rows)} "
                f"images (e.g. family {mixed.index[0]}: {counts}; {first['path'].iloc[0]}); "
                "the same cell under two labels, or a false link: check them by eye")
        return self

    def split(self, val=0.2, test=None, seed=0):
        """Group-aware stratified train/val(/test) split: ``{"train": M, "val": M, ...}``.

        No family spans two splits. With ``test`` both fractions are of the whole set;
        without it, rows from a ``TEST`` split folder stay the test set and ``val`` is
        a fraction of the rest.
        """
        from leukonet.data import splits

        return splits.split(self, val=val, test=test, seed=seed)

    def subsample(self, fraction, seed=0):
        """Stratified subset of whole families; nested across fractions for one seed."""
        from leukonet.data import splits

        return splits.subsample(self, fraction, seed=seed)

    def audit(self, other=None, threshold=families.DEFAULT_THRESHOLD, keypoints=False):
        """Leakage report within this manifest and against ``other``."""
        from leukonet.data import audit

        return audit.audit(self, other, threshold=threshold, keypoints=keypoints)

    def check(self, root=None, max_pixels=images.DEFAULT_MAX_PIXELS, workers=None):
        """Problems with the files under ``root``: a DataFrame (row, path, problem)."""
        from leukonet.data import audit

        return audit.check(self, root or self.root, max_pixels=max_pixels, workers=workers)

    # ---- reporting --------------------------------------------------------------
    def class_table(self) -> pd.DataFrame:
        """Per class: kept, rejected, duplicates and families."""
        kept = self.frame["label"].value_counts()
        rej = self.rejects
        table = pd.DataFrame(index=pd.Index(sorted(set(self.classes) | set(rej["label"]) - {""}),
                                            name="class"))
        table["kept"] = kept
        table["rejected"] = rej[rej["kind"] == "rejected"]["label"].value_counts()
        table["duplicates"] = rej[rej["kind"] == "duplicate"]["label"].value_counts()
        table["conflicts"] = rej[rej["kind"] == "conflict"]["label"].value_counts()
        if self.has_groups:
            table["families"] = self.frame.groupby("label")["group"].nunique()
        table = table.fillna(0).astype(int)
        table.loc["total"] = table.sum()
        if self.has_groups:
            table.loc["total", "families"] = self.frame["group"].nunique()
        unlabelled = rej[rej["label"] == ""]
        if len(unlabelled):
            table.loc["(no class)"] = 0
            table.loc["(no class)", "rejected"] = len(unlabelled)
        return table

    def summary(self) -> str:
        lines = [self.class_table().to_string()]
        if self.has_splits:
            lines.append("")
            lines.append(pd.crosstab(self.frame["label"], self.frame["split"], margins=True,
                                     margins_name="total").to_string())
        if self.has_groups:
            single = self.frame.groupby("group")["label"].transform("nunique") == 1
            purity = (self.frame.groupby("group")["label"].nunique() == 1).mean()
            lines.append(f"families: {self.frame['group'].nunique()}, "
                         f"{100 * purity:.2f}% hold a single label; {100 * single.mean():.2f}% "
                         "of the images are in those")
        lines.extend(self.notes)
        return "\n".join(lines)
