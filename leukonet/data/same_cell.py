"""Verified near-duplicate links: the colour histogram proposes, keypoints confirm.

Families are the connected components of a link graph, so one wrong link glues two cells'
families together, and chains of them glue a whole data set. On a set of distinct cells
with even staining (PBC, 17,092 photographs, one per cell) colour-histogram links alone
made one family of 3,370 images spanning all 8 labels. Here a histogram neighbour becomes
a link only when the two images are shown to be one picture: their SIFT keypoints agree
on one rotation + scale + shift, mirrored or not (``keypoint_links.inliers``), the test
that also merges shifted copies of one field (``keypoint_links.link_groups``).

An augmented copy keeps the red-cell layout around its white cell, so a true copy
matches by dozens of keypoints; two different cells, even of one class and stain, by
chance only by a few (blood-cells, measured 2026-12: of 300 copy pairs the histogram
proposes and 1,500 closest pairs of different families, every copy scored >= 9 and one
"different" pair 13, which the images show to share part of a field).

An image too small or too plain for keypoints (under ``MIN_SIDE`` pixels or
``MIN_KEYPOINTS`` keypoints: thumbnails, drawn test cells, blank crops) cannot be
verified; such a pair is linked on colour alone, as before verification existed, and the
build says how many links were taken that way. The family warnings of ``manifest
build`` (a family over 1 % of the images, or holding several labels) and the share
check of ``manifest split`` then show chaining where it happens.

Cost: keypoints of each image that has a proposed neighbour, and one or two matches per
proposed pair that is not already in one family (pairs are taken closest first, and a
pair whose images are already joined is skipped). Keypoints are held only until the
last pair of their image is done, so memory follows the largest group of proposals,
not the data set.
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from leukonet.data import families, keypoint_links

DEFAULT_NEIGHBOURS = 30  # histogram neighbours proposed per image (the closest ones)
# SIFT's default contrast threshold (0.04) left pale, blurred crops with ~65 keypoints, and
# 300 copy pairs of blood-cells with 2-6 agreeing ones; at 0.02 (~140 keypoints) each of
# them had >= 9. The field search (keypoint_links.link_groups) keeps the default: it
# compares every family with every other, where more keypoints mean more chance fits.
N_FEATURES = 500
CONTRAST_THRESHOLD = 0.02
MIN_KEYPOINTS = 12
# Below this shorter side an image is too small to verify: on the SYNTHETIC demo cells
# (60x80) copies of one cell matched by 8 or more keypoints in only 211 of 260 tested
# pairs, and their families broke apart (8 of 120 sources split, 4 by colour alone).
MIN_SIDE = 96
# Distinct places that must agree (keypoint_links.inliers). Measured 2026-12-04: 600 copy
# pairs of blood-cells scored 8 or more; 1,500 closest pairs of different families at most
# 4 (one pair at 12 shares part of a field); 2,500 random proposed pairs of PBC's distinct
# cells at most 5, its 75 linked pairs 60-200 (two images of one field).
MIN_INLIERS = 8  # fewer on either image: the pair cannot be verified by keypoints
CHUNK = 256  # pairs verified in parallel between two updates of the families


@dataclass
class LinkStats:
    """What the verification did: pairs proposed by colour, pairs tested by keypoints
    (the others were already joined through other links), links made (verified by
    keypoints, or on colour alone for images too plain to verify) and refused."""

    proposed: int = 0
    tested: int = 0
    verified: int = 0
    refused: int = 0
    colour_only: int = 0  # pairs too small or plain to verify: linked on colour alone

    def note(self, threshold):
        text = (f"links: {self.proposed} near pairs by colour (threshold {threshold:g}), "
                f"{self.tested} tested by keypoints, {self.verified} verified as one picture, "
                f"{self.refused} refused as different cells")
        if self.colour_only:
            text += (f"; {self.colour_only} pairs of images too small or plain for keypoints "
                     "linked on colour alone")
        return text


_NONE = (np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))  # too small to tell


def _keypoints(rgb):
    return keypoint_links.keypoints(rgb, N_FEATURES, CONTRAST_THRESHOLD)


class KeypointCache:
    """Keypoints of rows (and of their mirror images) computed once, dropped on request."""

    def __init__(self, read_rgb):
        self.read_rgb = read_rgb
        self._plain, self._mirror = {}, {}

    def plain(self, row):
        got = self._plain.get(row)
        if got is None:
            rgb = self.read_rgb(row)
            got = self._plain[row] = (_keypoints(rgb) if min(rgb.shape[:2]) >= MIN_SIDE
                                      else _NONE)
        return got

    def mirror(self, row):
        got = self._mirror.get(row)
        if got is None:
            rgb = self.read_rgb(row)
            got = self._mirror[row] = _keypoints(np.ascontiguousarray(rgb[:, ::-1]))
        return got

    def drop(self, row):
        self._plain.pop(row, None)
        self._mirror.pop(row, None)


def same_picture(cache, a, b, min_inliers):
    """Inliers of the better of ``b`` and its mirror against ``a``; None when either
    image has too few keypoints to tell."""
    ka, kb = cache.plain(a), cache.plain(b)
    if min(len(ka[0]), len(kb[0])) < MIN_KEYPOINTS:
        return None
    n = keypoint_links.inliers(ka, kb)
    if n < min_inliers:  # a flipped copy matches only its mirror image
        n = max(n, keypoint_links.inliers(ka, cache.mirror(b)))
    return n


def verified_groups(features, read_rgb, threshold=families.DEFAULT_THRESHOLD,
                    neighbours=DEFAULT_NEIGHBOURS, min_inliers=None, workers=None,
                    progress=None):
    """``(family id per row, LinkStats)``: components of the verified links.

    ``read_rgb(row)`` gives a row's RGB uint8 image. Candidates are each row's
    ``neighbours`` closest histogram neighbours within ``threshold``. The families do not
    depend on the order pairs are tested in: they are the components of all candidate
    pairs that verify (a skipped pair joins rows that are joined already).
    ``progress(done, total)`` follows the candidate pairs.
    """
    from scipy.cluster.hierarchy import DisjointSet

    min_inliers = MIN_INLIERS if min_inliers is None else min_inliers
    n = len(features)
    stats = LinkStats()
    if n == 0:
        return np.zeros(0, np.int64), stats
    i, j, d = families.candidate_pairs(features, threshold, neighbours)
    stats.proposed = len(i)
    # Pairs of one proposal component together (closest first within it), so that the
    # keypoints of a component can be dropped once its pairs are done.
    component = families.components(n, i, j)
    order = np.lexsort((d, component[i]))
    i, j, d = i[order], j[order], d[order]
    remaining = np.bincount(np.concatenate([i, j]), minlength=n)
    joined = DisjointSet(range(n))
    cache = KeypointCache(read_rgb)
    workers = workers or 2
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(i), CHUNK):
            a, b = i[start:start + CHUNK], j[start:start + CHUNK]
            pending = list(range(len(a)))
            while pending:
                # Each round tests pairs that touch no family twice (closest first), in
                # parallel: no test of a round can make another one needless, so no more
                # pairs are tested than one at a time would.
                pending = [k for k in pending if not joined.connected(a[k], b[k])]
                todo, busy = [], set()
                for k in pending:
                    ends = {joined[a[k]], joined[b[k]]}
                    if not ends & busy:
                        busy |= ends
                        todo.append(k)
                rows = sorted({int(r) for k in todo for r in (a[k], b[k])})
                list(pool.map(cache.plain, rows))  # each image read once, in parallel
                results = list(pool.map(lambda k: same_picture(cache, a[k], b[k], min_inliers),
                                        todo))
                for k, inl in zip(todo, results):
                    if inl is None:
                        link = True
                        stats.colour_only += 1
                    else:
                        stats.tested += 1
                        link = inl >= min_inliers
                        stats.verified += link
                        stats.refused += not link
                    if link:
                        joined.merge(a[k], b[k])
                done = set(todo)
                pending = [k for k in pending if k not in done]
            for r in np.concatenate([a, b]):
                remaining[r] -= 1
                if remaining[r] == 0:
                    cache.drop(int(r))
            if progress:
                progress(min(start + CHUNK, len(i)), len(i))
    roots = np.array([joined[r] for r in range(n)])
    return families.number_by_first_appearance(roots), stats


def verified_pairs(features, read_rgb, threshold=families.DEFAULT_THRESHOLD, other=None,
                   read_other=None, groups=None, neighbours=DEFAULT_NEIGHBOURS,
                   min_inliers=None, workers=None, progress=None):
    """``(i, j, inliers)`` of the histogram neighbours that are one picture: within
    ``features`` (i < j; with ``groups``, only pairs of two different families: copies
    the grouping missed), or of ``features`` (i) against ``other`` (j, read by
    ``read_other``). A pair too small or plain to verify counts, with inliers -1 (as
    ``verified_groups`` links it). ``progress(done, total)`` follows the candidate pairs."""
    min_inliers = MIN_INLIERS if min_inliers is None else min_inliers
    i, j, d = families.candidate_pairs(features, threshold, neighbours, other=other)
    if groups is not None and other is None:
        groups = np.asarray(groups)
        keep = groups[i] != groups[j]
        i, j, d = i[keep], j[keep], d[keep]
    n = len(features)
    offset = n if other is not None else 0  # rows of ``other`` follow in the cache
    cache = KeypointCache(read_rgb if other is None else
                          lambda r: read_rgb(r) if r < n else read_other(r - n))

    def one(k):
        return same_picture(cache, int(i[k]), offset + int(j[k]), min_inliers)

    found = []
    with ThreadPoolExecutor(workers or 2) as pool:
        for k, inl in enumerate(pool.map(one, range(len(i)))):
            if progress and ((k + 1) % 200 == 0 or k + 1 == len(i)):
                progress(k + 1, len(i))
            if inl is None:
                found.append((int(i[k]), int(j[k]), -1))
            elif inl is not None and inl >= min_inliers:
                found.append((int(i[k]), int(j[k]), int(inl)))
    return found
