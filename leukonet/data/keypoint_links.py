"""Link families that show the same field of view, by matching local keypoints.

The colour-histogram families (``families.py``) split the copies of one smear when the
copies are shifted far enough to frame different parts of the field: on the public
blood-cells set, 13 source smears had families in both training and validation of a
histogram-only split (found by matching every family to the 366 original smears; the
blood-cells manifest README has the numbers). The red-cell layout around a white cell is
a fingerprint that survives rotation, flips, shifts and colour changes, so two families
whose images share many keypoints under one similarity transform are one source.

How: SIFT keypoints (OpenCV) on a few images per family; every image's descriptors
query one FLANN index of all the others' for candidate families (votes after Lowe's
ratio test); each candidate pair is then verified geometrically: matched keypoints must
agree on one rotation + scale + shift (``cv2.estimateAffinePartial2D`` with RANSAC),
and ``min_inliers`` of them must. Families linked that way are merged (connected
components). OpenCV (``opencv-python-headless``) is one of leukonet's dependencies.

Defaults set on the blood-cells set (2026-11-25; data_manifests/blood-cells/README.md):
at 9 inliers every candidate pair that the original smears say is one source was linked
(90 of 90) and 5 of 186 links joined differently labelled families (some of them one
cell under two labels). The scale bound and the fill margin each removed chance fits.
Since 2026-12-04 the inliers are distinct places (SIFT puts several keypoints on one
spot, and spot-to-spot matches had counted up to 16 between two different drawn cells),
and the families linked are verified ones (``same_cell``). Scoring all 935 candidate
pairs of those families on blood-cells against the original smears, 9 distinct places
kept: 334 families, each inside one family of the 2026-11-25 manifest, none across its
train/val/test files; 2 of the links at 9 join families matched to two different (often
neighbouring) originals.
On the SYNTHETIC demo set, whose source cells are known: the histogram alone splits 4 of
120 sources across families, with keypoint links none, and no family mixes two sources
(a test checks both).
"""
import numpy as np

from leukonet.data import families
from leukonet.errors import LeukonetError

MAX_SIDE = 400  # images are matched at most this large (the blood-cells images: 320)
N_FEATURES = 600  # SIFT keypoints kept per image
CONTRAST_THRESHOLD = 0.04  # SIFT's default
RATIO = 0.75  # Lowe's ratio test
DEFAULT_MIN_INLIERS = 9  # distinct places that must agree on one similarity transform (see above)
FILL_MARGIN = 10  # pixels kept clear of black fill and of the picture's edge
MAX_SCALE = 1.25  # largest scale change between two copies of one field
CANDIDATES = 4  # other families verified per family (the most voted)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise LeukonetError(
            "keypoint links need OpenCV, a leukonet dependency missing here: "
            "pip install opencv-python-headless"
        ) from None
    return cv2


def keypoints(rgb, n_features=N_FEATURES, contrast=CONTRAST_THRESHOLD):
    """``(points (n, 2) float32, descriptors (n, 128) float32)`` of one RGB uint8 image."""
    cv2 = _cv2()
    gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    scale = MAX_SIDE / max(h, w)
    if scale < 1:
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    else:
        scale = 1.0
    # Rotated copies carry black fill in the corners; the straight edges of that fill
    # give keypoints that agree between any two similarly rotated images, so keypoints
    # are only taken well inside the picture.
    mask = (gray >= families.BLACK_LEVEL).astype(np.uint8)
    mask = cv2.erode(mask, np.ones((2 * FILL_MARGIN + 1,) * 2, np.uint8), borderValue=0)
    found, desc = cv2.SIFT_create(nfeatures=n_features,
                                   contrastThreshold=contrast).detectAndCompute(gray, mask)
    if desc is None or len(found) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    points = np.array([k.pt for k in found], np.float32) / scale
    return points, desc.astype(np.float32)


def inliers(a, b, ratio=RATIO):
    """Keypoints of ``a`` and ``b`` (each from ``keypoints``) that agree on one
    rotation + uniform scale + shift; 0 when too few match to tell."""
    cv2 = _cv2()
    (pa, da), (pb, db) = a, b
    if len(da) < 2 or len(db) < 2:
        return 0
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 3:
        return 0
    src = pa[[m.queryIdx for m in good]]
    dst = pb[[m.trainIdx for m in good]]
    # Flips are covered: SIFT descriptors of a mirrored image do not match, but the
    # caller passes the mirrored keypoints as well (see ``link_groups``).
    transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                  ransacReprojThreshold=4.0)
    if transform is None:
        return 0
    # Copies of one field are rotated and shifted, hardly rescaled; a chance fit on
    # look-alike red cells usually is.
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE:
        return 0
    # SIFT puts several keypoints on one spot (one per orientation or scale), and one
    # spot matched to one spot counted 10-16 "inliers" between two different drawn
    # cells: count the distinct places that agree, on both sides.
    keep = mask.ravel() == 1
    return int(min(len(np.unique(np.round(src[keep]), axis=0)),
                   len(np.unique(np.round(dst[keep]), axis=0))))


def _with_mirror(rgb):
    return [keypoints(rgb), keypoints(np.ascontiguousarray(rgb[:, ::-1]))]


def link_groups(groups, read_rgb, per_family=3, min_inliers=DEFAULT_MIN_INLIERS,
                candidates=CANDIDATES, seed=0, progress=None):
    """Pairs of families ``(a, b, inliers)`` (a < b) that show the same field.

    ``groups``: the family id of each row; ``read_rgb(row)``: the RGB uint8 image of a
    row. Up to ``per_family`` rows of each family are read (a seeded sample).
    ``progress(done, total)`` is called as families are read, ending with total.
    """
    cv2 = _cv2()
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    reps = {}  # family -> list of keypoint sets (each image and its mirror)
    order = np.argsort(groups, kind="stable")  # rows of each family together, in row order
    ids, starts = np.unique(groups[order], return_index=True)
    for n, (g, rows) in enumerate(zip(ids, np.split(order, starts[1:]))):
        rows = rng.choice(rows, size=min(per_family, len(rows)), replace=False)
        reps[g] = [kp for r in sorted(rows) for kp in _with_mirror(read_rgb(int(r)))]
        if progress and ((n + 1) % 50 == 0 or n + 1 == len(ids)):
            progress(n + 1, len(ids))  # the reading and SIFT stage: most of the time
    owners, descs = [], []
    for g, sets in reps.items():
        for _, d in sets:
            owners.append(np.full(len(d), g))
            descs.append(d)
    if not descs or sum(len(d) for d in descs) < 2:
        return []
    owner = np.concatenate(owners)
    index = cv2.FlannBasedMatcher(dict(algorithm=1, trees=4), dict(checks=64))
    index.add([np.concatenate(descs)])
    index.train()
    found = {}
    for g, sets in reps.items():
        votes = {}
        # The mirror views sit in the index, so querying the plain views is enough.
        for _, d in sets[::2]:
            if len(d) == 0:
                continue
            for near in index.knnMatch(d, k=8):
                # The nearest descriptor of another family, tested against the next one
                # from a third family (siblings of one family are not competitors).
                other = [m for m in near if owner[m.trainIdx] != g]
                if len(other) < 2:
                    continue
                first = other[0]
                rival = next((m for m in other[1:] if owner[m.trainIdx] != owner[first.trainIdx]),
                             None)
                if rival is None or first.distance < RATIO * rival.distance:
                    h = owner[first.trainIdx]
                    votes[h] = votes.get(h, 0) + 1
        for h in sorted(votes, key=votes.get, reverse=True)[:candidates]:
            key = (min(g, h), max(g, h))
            if key in found:
                continue
            found[key] = max(inliers(a, b) for a in sets[::2] for b in reps[h])
    return [(a, b, n) for (a, b), n in sorted(found.items()) if n >= min_inliers]


def merge(groups, links):
    """Family ids after merging linked families (connected components), numbered by
    first appearance as ``families.group_features`` numbers them."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    groups = np.asarray(groups)
    ids, dense = np.unique(groups, return_inverse=True)
    position = {g: i for i, g in enumerate(ids)}
    a = [position[x] for x, _, _ in links]
    b = [position[y] for _, y, _ in links]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    return families.number_by_first_appearance(component[dense])
