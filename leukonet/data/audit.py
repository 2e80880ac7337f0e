"""Leakage audit between manifests, and a file-by-file check of a manifest against disk.

Exact links are shared content hashes. Near-duplicate links (when the images can be read,
i.e. a root is known) are colour-histogram neighbours that keypoints verify as one
picture (``same_cell``), the test ``manifest build`` links families by; without images,
shared family ids stand in, which is meaningful for manifests cut from one build (the
train/val/test files of one ``manifest split``).
"""
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leukonet.data import families, images, scan
from leukonet.errors import ImageError


@dataclass
class AuditReport:
    names: list
    families: dict = field(default_factory=dict)  # name -> per-class table
    within: dict = field(default_factory=dict)  # name -> dict of counts
    across: dict = field(default_factory=dict)  # counts between the two manifests
    examples: list = field(default_factory=list)  # (a_path, b_path, kind)
    verdict: str = ""

    @property
    def leaks(self) -> bool:
        a = self.across
        return bool(a) and (a["exact"] + max(a["near"], 0) + a["shared_families"]
                            + a.get("keypoint", 0)) > 0

    def __str__(self):
        lines = []
        for name in self.names:
            w = self.within[name]
            lines.append(f"== {name}: {w['images']} images, {w['families']} families "
                         f"({w['multi_families']} with more than one image, largest "
                         f"{w['largest']}), {w['exact']} exact duplicate pairs, "
                         f"{w['near']} near-duplicate pairs across its families"
                         + (" (not measured: no --root)" if w["near"] < 0 else
                            " (verified copies the families missed)" if w["near"] else ""))
            lines.append(self.families[name].to_string())
        if self.across:
            a = self.across
            lines.append(f"== {self.names[0]} vs {self.names[1]}: {a['exact']} exact links, "
                         f"{a['near']} near-duplicate links, {a['shared_families']} shared "
                         "family ids" + ("" if a["near"] >= 0 else " (near links not measured: no --root)")
                         + (f", {a['keypoint']} pairs of families showing the same field "
                            "(keypoints)" if "keypoint" in a else ""))
            for x, y, kind in self.examples[:10]:
                lines.append(f"   {kind}: {x} <-> {y}")
        lines.append(self.verdict)
        return "\n".join(lines).replace("-1 near-duplicate", "? near-duplicate")


def _family_table(manifest):
    frame = manifest.frame
    table = frame.groupby("label").agg(images=("path", "size"), families=("group", "nunique"))
    table["images per family"] = (table["images"] / table["families"]).round(1)
    return table


def _within(manifest, name, threshold, use_features, progress=None):
    frame = manifest.frame
    sizes = frame["group"].value_counts() if manifest.has_groups else pd.Series(dtype=int)
    dup_sizes = frame["sha1"].value_counts()
    exact = int((dup_sizes * (dup_sizes - 1) // 2).sum())
    near = -1
    if use_features:  # copies of one cell the families missed
        from leukonet.data import same_cell

        groups = frame["group"].to_numpy() if manifest.has_groups else None
        near = len(same_cell.verified_pairs(manifest.features().astype(np.float32),
                                            manifest.image_reader(), threshold, groups=groups,
                                            progress=progress))
    return dict(images=len(frame), families=len(sizes), multi_families=int((sizes > 1).sum()),
                largest=int(sizes.max()) if len(sizes) else 0, exact=exact, near=near)


def _keypoint_links_across(a, b, threshold):
    """Pairs of families (one in ``a``, one in ``b``) that show the same field, as
    ``(row in a, row in b)`` of one image each (``keypoint_links``; reads the images)."""
    from leukonet.data import keypoint_links, same_cell

    def families_of(m):
        if m.has_groups:
            return m.frame["group"].to_numpy()
        return same_cell.verified_groups(m.features().astype(np.float32), m.image_reader(),
                                         threshold)[0]

    ga, gb = families_of(a), families_of(b)
    _, ga = np.unique(ga, return_inverse=True)
    _, gb = np.unique(gb, return_inverse=True)
    gb = gb + (ga.max() + 1 if len(ga) else 0)
    read_a, read_b = a.image_reader(), b.image_reader()

    def read(row):
        return read_a(row) if row < len(ga) else read_b(row - len(ga))

    groups = np.concatenate([ga, gb])
    links = keypoint_links.link_groups(groups, read)
    first = {g: i for i, g in reversed(list(enumerate(groups)))}
    last_a = ga.max() if len(ga) else -1  # ids up to last_a are a's, above are b's
    return [(first[x], first[y] - len(ga)) for x, y, _ in links if x <= last_a < y]


def audit(a, b=None, threshold=families.DEFAULT_THRESHOLD, names=None, keypoints=False,
          progress=None):
    """Compare manifest ``a`` with itself and, if given, with ``b``.

    ``keypoints`` (needs the images and OpenCV) also links families of ``a`` and ``b``
    that show the same field of view (``keypoint_links``): shifted copies the colour
    descriptor misses. ``progress(what)`` gives a ``progress(done, total)`` callback for
    each verification stage (the command line's bars).
    """
    progress = progress or (lambda what: None)
    manifests = [m for m in (a, b) if m is not None]
    names = names or [f"manifest {i + 1}" for i in range(len(manifests))]
    use_features = all(m.root is not None for m in manifests)  # verification reads images
    report = AuditReport(names=list(names))
    for m, name in zip(manifests, names):
        report.within[name] = _within(m, name, threshold, use_features,
                                      progress(f"verify near pairs in {name}"))
        report.families[name] = _family_table(m) if m.has_groups else pd.DataFrame()
    if b is not None:
        fa, fb = a.frame, b.frame
        shared_hash = fa.merge(fb, on="sha1", suffixes=("_a", "_b"))
        report.examples += [(x, y, "exact") for x, y in zip(shared_hash["path_a"], shared_hash["path_b"])]
        near = -1
        if use_features:
            from leukonet.data import same_cell

            pairs = same_cell.verified_pairs(a.features().astype(np.float32), a.image_reader(),
                                             threshold, other=b.features().astype(np.float32),
                                             read_other=b.image_reader(),
                                             progress=progress("verify near pairs across"))
            near = len(pairs)
            report.examples += [(fa["path"].iloc[x], fb["path"].iloc[y], "near")
                                for x, y, _ in pairs[:10]]
        shared_groups = 0
        if a.has_groups and b.has_groups:
            shared_groups = len(set(fa["group"]) & set(fb["group"]))
        report.across = dict(exact=len(shared_hash), near=near, shared_families=shared_groups)
        if keypoints:
            pairs = _keypoint_links_across(a, b, threshold)
            report.across["keypoint"] = len(pairs)
            report.examples = [(fa["path"].iloc[x], fb["path"].iloc[y], "same field")
                               for x, y in pairs] + report.examples
    report.verdict = _verdict(report, a)
    return report


def _verdict(report, a):
    within = report.within[report.names[0]]
    if report.across:
        x = report.across
        if report.leaks:
            same_field, how = "", ""
            if x.get("keypoint"):
                same_field = f", {x['keypoint']} pairs of families showing the same field"
                how = " after `leukonet manifest build --keypoint-links`"
            return (f"LEAK: {x['exact']} exact and {max(x['near'], 0)} near-duplicate links, "
                    f"{x['shared_families']} shared families{same_field} between "
                    f"{report.names[0]} and {report.names[1]}; re-split with `leukonet manifest "
                    f"split`{how}")
        how = "" if x["near"] >= 0 else " (by hash and family id; pass --root to compare images)"
        fam = ", ".join(f"{n}: {report.within[n]['multi_families']} families of copies"
                        for n in report.names)
        return f"OK: no link between {report.names[0]} and {report.names[1]}{how}; within ({fam}) stays inside each"
    problems = []
    if within["exact"]:
        problems.append(f"{within['exact']} exact duplicate pairs (run dedup)")
    if a.has_splits and a.has_groups:
        spans = int((a.frame.groupby("group")["split"].nunique() > 1).sum())
        if spans:
            problems.append(f"{spans} families span two splits")
    if problems:
        return "LEAK: " + "; ".join(problems)
    return (f"OK: {within['multi_families']} families of augmented copies; keep each family "
            "inside one split (`leukonet manifest split` does)")


def check(manifest, root, max_pixels=images.DEFAULT_MAX_PIXELS, workers=None):
    """Every row's file: exists, hash matches, decodes, same size. Returns the problems."""
    from leukonet.data.manifest import read_rows

    paths = list(manifest.frame["path"])
    problems = []
    escaped = set()
    for i, rel in enumerate(paths):
        try:
            scan.resolve(root, rel, row=i + 2)
        except Exception as e:  # noqa: BLE001 - LeukonetError: reported, not raised
            problems.append(dict(row=i + 2, path=rel, problem=str(e).split(": ", 1)[-1]))
            escaped.add(i)
    readable = [i for i in range(len(paths)) if i not in escaped]
    results = read_rows(root, [paths[i] for i in readable], max_pixels, workers)
    frame = manifest.frame
    for i, got in zip(readable, results):
        row = frame.iloc[i]
        if isinstance(got, ImageError):
            problems.append(dict(row=i + 2, path=row["path"], problem=got.reason))
            continue
        sha1, width, height, _ = got
        if isinstance(row["sha1"], str) and row["sha1"] and sha1 != row["sha1"]:
            problems.append(dict(row=i + 2, path=row["path"],
                                 problem="content differs from the manifest (sha1 mismatch)"))
        elif pd.notna(row["width"]) and (int(row["width"]), int(row["height"])) != (width, height):
            problems.append(dict(row=i + 2, path=row["path"],
                                 problem=f"size {width}x{height} differs from the manifest"))
    return pd.DataFrame(problems, columns=["row", "path", "problem"]).sort_values("row",
                                                                                 ignore_index=True)
