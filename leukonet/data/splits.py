"""Group-aware splits and nested low-data subsets of a manifest.

Both work on whole families (the ``group`` column), so augmented copies of one cell
never end up on two sides of a split, and a 10 % subset never holds a fraction of a
family.
"""
import warnings

import numpy as np
import pandas as pd

from leukonet.errors import LeukonetError

_TEST_NAMES = {"test", "testing"}
MISS_TOLERANCE = 0.02  # a split more than 2 points off its requested share warns


def _require_groups(manifest):
    if not manifest.has_groups:
        raise LeukonetError(
            "this manifest has no family column (`group`); build it with `leukonet manifest "
            "build` (which groups) or call .group() first"
        )


def _check_fraction(name, value, upper=0.5):
    if value is None:
        return
    if not 0 < value <= upper:
        raise LeukonetError(f"--{name} {value}: expected a fraction in (0, {upper}]")


def hold_out(labels, groups, fraction, seed):
    """Boolean mask of a held-out share of about ``fraction`` of whole groups.

    scikit-learn's StratifiedGroupKFold with ``round(1 / fraction)`` folds keeps each
    class's share close to the overall one while keeping groups whole; the first fold
    is the held-out part.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / fraction))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise LeukonetError(
            f"only {n_groups} families: too few to hold out {fraction:.0%} of them; "
            "lower the fraction or add data"
        )
    kfold = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class has only k members": reported by the count table.
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(kfold.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def group_folds(labels, groups, k, seed):
    """Fold number (0 .. k-1) of each row for k-fold cross-validation over whole groups.

    scikit-learn's StratifiedGroupKFold, as in ``hold_out``: every group lands in exactly
    one fold, and each fold's class shares stay close to the overall ones. Its greedy
    placement takes the groups in order of how uneven their class counts are (for groups
    of one class, largest first), so the seed only reorders groups that tie: on
    blood-cells each fold's class counts came out the same for seeds 0-4, and a new seed
    changes which cells share a fold, not the fold sizes.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if k < 2:
        raise LeukonetError(f"--folds {k}: expected at least 2 folds")
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise LeukonetError(f"--folds {k}: only {n_groups} families to share among {k} folds; "
                            "lower --folds or add data")
    kfold = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold = np.full(len(labels), -1, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class": see hold_out
        for i, (_, held) in enumerate(kfold.split(np.zeros(len(labels)), labels, groups)):
            fold[held] = i
    return fold


def split(manifest, val=0.2, test=None, seed=0):
    """``{"train": Manifest, "val": Manifest[, "test": Manifest]}``; see Manifest.split."""
    _require_groups(manifest)
    _check_fraction("val", val)
    _check_fraction("test", test)
    frame = manifest.frame
    labels, groups = frame["label"].to_numpy(), frame["group"].to_numpy()
    notes = []
    dropped = np.zeros(len(frame), dtype=bool)
    if test is not None:
        if val + test >= 0.8:
            raise LeukonetError(f"--val {val} + --test {test} leave too little to train on")
        is_test = hold_out(labels, groups, test, seed)
        val_share = val / (1 - test)  # of what is left after the test split
    elif manifest.has_splits and frame["split"].str.casefold().isin(_TEST_NAMES).any():
        is_test = frame["split"].str.casefold().isin(_TEST_NAMES).to_numpy()
        others = sorted(set(frame["split"][~is_test]))
        notes.append(f"test: the {frame['split'][is_test].iloc[0]} folder; "
                     f"train/val: drawn from {', '.join(others)}")
        shared = set(groups[is_test]) & set(groups[~is_test])
        if shared:
            # The test folder is the published benchmark, so it stays whole; the other
            # copies of its cells are left out of train/val (they stay in the manifest).
            leaked = ~is_test & np.isin(groups, list(shared))
            notes.append(f"warning: {len(shared)} families are in the test folder and the "
                         f"rest: the folder split leaks; their {int(leaked.sum())} images "
                         "outside the test folder are left out of train and val")
            dropped = leaked
        val_share = val
    else:
        is_test = np.zeros(len(frame), dtype=bool)
        val_share = val
    rest = np.flatnonzero(~is_test & ~dropped)
    is_val = np.zeros(len(frame), dtype=bool)
    is_val[rest[hold_out(labels[rest], groups[rest], val_share, seed)]] = True
    parts = {"train": ~is_val & ~is_test & ~dropped, "val": is_val}
    if is_test.any():
        parts["test"] = is_test
    cut = ~is_test & ~dropped if test is None else np.ones(len(frame), bool)  # split here
    notes += _class_warnings(labels[cut], groups[cut], 3 if test is not None else 2)
    out = {}
    for name, mask in parts.items():
        positions = np.flatnonzero(mask)
        part = manifest._take(positions, notes=[])
        part.frame["split"] = name
        out[name] = part
    _assert_disjoint(out)
    requested = {"val": val, "test": test} if test is not None else {"val": val_share}
    notes += missed_shares(split_shares(out, test), requested)
    for part in out.values():
        part.notes += notes
    return out


def split_shares(parts, test=None):
    """Per class (rows) and split (columns): the share of the class's images in that
    split. With a test folder kept whole (``test`` None and a ``test`` part) the test
    part is left out and train/val are shares of the rest, as ``--val`` asks."""
    if test is None and "test" in parts:
        parts = {k: v for k, v in parts.items() if k != "test"}
    counts = pd.DataFrame({k: p.frame["label"].value_counts() for k, p in parts.items()})
    counts = counts.fillna(0)
    table = counts.div(counts.sum(axis=1), axis=0)
    table.index.name = "class"
    return table.sort_index()


def missed_shares(shares, requested, tolerance=MISS_TOLERANCE):
    """Warnings for every split whose share of some class is off its request by more
    than ``tolerance`` (a fraction: 0.02 is 2 points)."""
    notes = []
    for name, want in requested.items():
        if want is None or name not in shares:
            continue
        off = (shares[name] - want).abs()
        bad = off[off > tolerance]
        if len(bad):
            worst = bad.idxmax()
            notes.append(
                f"warning: {name} misses its {want:.0%} by more than {100 * tolerance:.0f} points "
                f"for {len(bad)} class(es): " + ", ".join(f"{c} {shares.at[c, name]:.1%}"
                                                           for c in bad.index)
                + (f" (worst {worst})" if len(bad) > 1 else "")
                + "; whole families cannot be cut: large families or few families per "
                "class; try another --seed, or accept it")
    return notes


def _class_warnings(labels, groups, n_splits):
    """A class with fewer families than splits cannot be in every split."""
    per_class = pd.Series(groups).groupby(np.asarray(labels)).nunique()
    few = per_class[per_class < n_splits]
    if not len(few):
        return []
    return [f"warning: class {c} has {n} famil{'y' if n == 1 else 'ies'} "
            f"({int((np.asarray(labels) == c).sum())} images): it cannot be in all {n_splits} "
            "splits; add images of it, or drop it from the manifest" for c, n in few.items()]


def _assert_disjoint(parts):
    seen = {}
    for name, part in parts.items():
        for g in set(part.frame["group"]):
            if g in seen and seen[g] != name and g is not None:
                raise AssertionError(f"family {g} in both {seen[g]} and {name}")
            seen[g] = name


def split_table(parts) -> pd.DataFrame:
    """Images per class and split, with each split's share and family count."""
    table = pd.DataFrame({name: p.frame["label"].value_counts() for name, p in parts.items()})
    table = table.fillna(0).astype(int)
    table.index.name = "class"
    table.loc["total"] = table.sum()
    table.loc["families"] = [p.frame["group"].nunique() for p in parts.values()]
    return table


def family_order(manifest, seed):
    """Families of each class in one seeded order, independent of any fraction.

    A family counts for its most common label. Taking a prefix of this order for each
    fraction is what makes the subsets nested.
    """
    frame = manifest.frame
    info = frame.groupby("group").agg(label=("label", lambda s: s.mode().iloc[0]),
                                       size=("label", "size"))
    rng = np.random.default_rng(seed)
    order = {}
    for label, fams in info.groupby("label"):
        ids = np.sort(fams.index.to_numpy())
        order[label] = [(g, int(info.at[g, "size"])) for g in ids[rng.permutation(len(ids))]]
    return order


def subsample(manifest, fraction, seed=0):
    """Whole families, per class, until each class holds ``fraction`` of its images.

    At least one family per class. Nested: for one seed, the 1 % subset lies inside
    the 10 % one, which lies inside the 50 % one.
    """
    _require_groups(manifest)
    if not 0 < fraction <= 1:
        raise LeukonetError(f"--fraction {fraction}: expected a fraction in (0, 1]")
    frame = manifest.frame
    chosen = set()
    for label, fams in family_order(manifest, seed).items():
        target = fraction * (frame["label"] == label).sum()
        total = 0
        for g, size in fams:
            if total >= target - 1e-9 and total > 0:
                break
            chosen.add(g)
            total += size
    positions = np.flatnonzero(frame["group"].isin(chosen).to_numpy())
    return manifest._take(positions)


def fraction_tag(fraction) -> str:
    """``0.1`` → ``"10pct"``, ``0.005`` → ``"0.5pct"``: for output file names."""
    return f"{100 * fraction:g}pct"
