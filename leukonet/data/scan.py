"""Find the labelled images of a data set: a folder-per-class tree or a labels CSV.

Scanning only lists candidate files with their labels; reading, hashing and
de-duplicating them is the manifest's job. Problems with single rows (an empty label,
a missing file) become rejects with a reason; problems with the whole input (no root,
no such column) raise a one-line ``LeukonetError``.
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from leukonet.errors import LeukonetError

# Values of a labels CSV cell that hold several labels ("NEUTROPHIL, LYMPHOCYTE").
_LABEL_SEPARATORS = (",", ";", "|")


@dataclass
class Candidate:
    path: str  # POSIX, relative to the root
    label: str
    split: str | None = None


@dataclass
class ScanResult:
    candidates: list = field(default_factory=list)  # Candidate
    rejects: list = field(default_factory=list)  # dicts: path, label, split, reason
    notes: list = field(default_factory=list)  # one-line remarks for the summary


def check_root(root) -> Path:
    root = Path(root)
    if not root.exists():
        raise LeukonetError(f"{root}: data root does not exist; pass the folder that holds the class folders")
    if not root.is_dir():
        raise LeukonetError(f"{root}: data root is not a folder")
    if not any(root.iterdir()):
        raise LeukonetError(f"{root}: data root is empty; pass the folder that holds the class folders")
    return root


def posix_name(name: str) -> tuple[str, bool]:
    """A file-name component that can be written to a UTF-8 CSV.

    On POSIX, bytes that are not UTF-8 reach Python as lone surrogates; they are
    re-read as Latin-1 (every byte is a character there) and ``resolve`` maps them
    back. Returns (name, changed).
    """
    try:
        name.encode("utf-8")
        return name, False
    except UnicodeEncodeError:
        return os.fsencode(name).decode("latin-1"), True


def check_inside(relpath: str, row=None):
    """Refuse a manifest path that is absolute, climbs out with ``..`` or names a drive.

    String operations rather than ``PurePosixPath`` parsing: the loader checks every row
    of a manifest when it starts."""
    parts = relpath.split("/")
    first = next((part for part in parts if part not in ("", ".")), "")
    if relpath.startswith("/") or ".." in parts or ":" in first:
        where = f"row {row}: " if row is not None else ""
        raise LeukonetError(
            f"{where}path {relpath!r} escapes the data root; manifest paths must be relative "
            "to the data root (--data-root, or --root for `manifest` commands) and stay "
            "inside it"
        )


def resolve(root, relpath: str, row=None) -> Path:
    """The file a manifest path names under ``root``; refuses paths that escape it.

    ``check_inside``, then a stat (and the Latin-1 mapping when the file is not there)."""
    check_inside(relpath, row)
    path = Path(os.path.join(root, relpath))
    if not os.path.exists(path):
        # A non-UTF-8 name was stored as Latin-1 (see posix_name): map it back.
        try:
            raw = os.fsdecode(relpath.encode("latin-1"))
        except UnicodeEncodeError:
            return path
        alt = Path(root, *PurePosixPath(raw).parts)
        if alt.exists():
            return alt
    return path


def normalise_labels(labels: pd.Series) -> tuple[pd.Series, list]:
    """Merge spellings that differ only by case or stray spaces.

    Each variant maps to its most frequent spelling (ties: the alphabetically first).
    Returns the normalised labels and one note per merged variant.
    """
    stripped = labels.astype(str).str.strip()
    counts = stripped.value_counts()
    keys = counts.index.to_series().str.casefold()
    canonical, notes = {}, []
    for key, spellings in counts.groupby(keys.values):
        spellings = spellings.sort_index().sort_values(ascending=False, kind="stable")
        best = spellings.index[0]
        for s in spellings.index:
            canonical[s] = best
    for original in sorted(labels.astype(str).unique()):
        target = canonical[original.strip()]
        if original != target:
            notes.append(f"label {original!r} read as {target!r}")
    return stripped.map(canonical), notes


def scan_folder(root, splits=None) -> ScanResult:
    """Candidates from ``ROOT/<class>/<file>`` or ``ROOT/<split>/<class>/<file>``.

    The layout is inferred from the depth of the files: all at depth 2 means class
    folders, all at depth 3 means split folders above class folders. ``splits``
    (names, case-insensitive) keeps only those split folders.
    """
    root = check_root(root)
    files, renamed = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root).parts
        for name in sorted(filenames):
            parts = [*rel_dir, name]
            clean = [posix_name(p) for p in parts]
            renamed += any(changed for _, changed in clean)
            files.append([p for p, _ in clean])
    result = ScanResult()
    if renamed:
        result.notes.append(f"{renamed} file name(s) are not UTF-8; stored as Latin-1 text")
    depths = {len(p) for p in files}
    deepest = max(depths, default=0)
    if deepest < 2:
        raise LeukonetError(
            f"{root}: no class folders found; expected ROOT/<class>/<image> or "
            "ROOT/<split>/<class>/<image>"
        )
    if deepest > 3:
        example = "/".join(next(p for p in files if len(p) == deepest))
        raise LeukonetError(
            f"{root}: {example!r} is nested {deepest - 1} folders deep; expected "
            "ROOT/<class>/<image> or ROOT/<split>/<class>/<image>"
        )
    has_splits = deepest == 3
    wanted = {s.casefold() for s in splits} if splits else None
    if wanted and not has_splits:
        raise LeukonetError(f"{root}: --splits given but the tree has no split folders")
    for parts in files:
        rel = "/".join(parts)
        if len(parts) != deepest:
            result.rejects.append(dict(path=rel, label="", split="", reason="outside the class folders"))
            continue
        split = parts[0] if has_splits else None
        if wanted and split.casefold() not in wanted:
            continue
        result.candidates.append(Candidate(rel, parts[-2], split))
    if wanted:
        found = {c.split.casefold() for c in result.candidates}
        missing = sorted(wanted - found)
        if missing:
            raise LeukonetError(f"{root}: no split folder named {', '.join(missing)}")
    _check_class_folders(root, has_splits, wanted, result)
    _normalise(result)
    return result


def _check_class_folders(root, has_splits, wanted, result):
    """Error when no class holds a file; a note for each empty class folder."""
    if not result.candidates:
        raise LeukonetError(f"{root}: no files found in the class folders")
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir()] if has_splits else [root]
    for base in split_dirs:
        if wanted and base.name.casefold() not in wanted:
            continue
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            if not any(f.is_file() for f in d.iterdir()):
                where = d.relative_to(root).as_posix()
                result.notes.append(f"warning: class folder {where}/ holds no images; skipped")


def _normalise(result: ScanResult):
    if not result.candidates:
        return
    labels = pd.Series([c.label for c in result.candidates])
    normal, notes = normalise_labels(labels)
    for c, label in zip(result.candidates, normal):
        c.label = label
    result.notes.extend(notes)


def read_label_map(spec) -> dict:
    """``--label-map``: a JSON object file, a two-column CSV file, or ``a=b,c=d``."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {str(k).strip(): str(v) for k, v in spec.items()}
    path = Path(spec)
    if path.suffix.lower() == ".json" and path.exists():
        try:
            mapping = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise LeukonetError(f"{path}: --label-map is not valid JSON ({e})") from None
        if not isinstance(mapping, dict):
            raise LeukonetError(f"{path}: --label-map JSON must be an object {{code: label}}")
        return {str(k).strip(): str(v) for k, v in mapping.items()}
    if path.suffix.lower() == ".csv" and path.exists():
        frame = pd.read_csv(path, dtype=str, header=None, keep_default_na=False)
        if frame.shape[1] != 2:
            raise LeukonetError(f"{path}: --label-map CSV must have two columns: code,label")
        return {k.strip(): v for k, v in zip(frame[0], frame[1])}
    mapping = {}
    for item in str(spec).split(","):
        if "=" not in item:
            raise LeukonetError(
                f"--label-map {spec!r}: expected a .json or .csv file, or code=label pairs "
                "separated by commas"
            )
        code, label = item.split("=", 1)
        mapping[code.strip()] = label.strip()
    return mapping


def scan_labels_csv(root, labels_csv, path_column, label_column, label_map=None,
                    path_format=None) -> ScanResult:
    """Candidates from a labels CSV whose paths are relative to ``root``.

    ``path_format`` turns a cell into a file name (``"BloodImage_{:05d}.jpg"`` for a
    column of numbers). Rows with no label, several labels, an unmapped code or no file
    become rejects.
    """
    root = check_root(root)
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise LeukonetError(f"{labels_csv}: labels CSV not found")
    try:
        frame = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise LeukonetError(f"{labels_csv}: cannot read as CSV ({e})") from None
    missing = [c for c in (path_column, label_column) if c not in frame.columns]
    if missing:
        have = ", ".join(repr(c) for c in frame.columns)
        raise LeukonetError(
            f"{labels_csv}: no column {' or '.join(repr(c) for c in missing)}; its columns "
            f"are {have}; pass --path-column and --label-column"
        )
    mapping = read_label_map(label_map)
    result = ScanResult()
    backslashes = 0
    for i, (cell, raw_label) in enumerate(zip(frame[path_column], frame[label_column])):
        row = i + 2  # 1-based, after the header line: the row number a spreadsheet shows
        rel = _format_path(cell.strip(), path_format, labels_csv, row)
        if "\\" in rel:
            rel, backslashes = rel.replace("\\", "/"), backslashes + 1
        resolve(root, rel, row=f"{labels_csv}:{row}")  # raises if it escapes the root
        labels = {p.strip() for p in _split_labels(raw_label)} - {""}
        if mapping:
            unmapped = sorted(l for l in labels if l not in mapping)
            if unmapped:
                reason = f"label code {', '.join(unmapped)} not in --label-map (row {row})"
                result.rejects.append(dict(path=rel, label=raw_label, split="", reason=reason))
                continue
            labels = {mapping[l].strip() for l in labels}
        if not labels:
            result.rejects.append(dict(path=rel, label="", split="", reason=f"no label (row {row})"))
        elif len({l.casefold() for l in labels}) > 1:
            reason = f"several labels ({', '.join(sorted(labels))}; row {row}); leukonet trains single-label classifiers"
            result.rejects.append(dict(path=rel, label=raw_label, split="", reason=reason))
        elif not resolve(root, rel).is_file():
            result.rejects.append(dict(path=rel, label=labels.pop(), split="", reason=f"file not found (row {row})"))
        else:
            result.candidates.append(Candidate(rel, labels.pop()))
    if backslashes:
        result.notes.append(f"{backslashes} path(s) with Windows separators converted to '/'")
    if not result.candidates:
        raise LeukonetError(f"{labels_csv}: no row names an existing, labelled image under {root}")
    _normalise(result)
    return result


def _split_labels(cell: str):
    for sep in _LABEL_SEPARATORS[1:]:
        cell = cell.replace(sep, _LABEL_SEPARATORS[0])
    return cell.split(_LABEL_SEPARATORS[0])


def _format_path(cell, path_format, labels_csv, row):
    if not path_format:
        return cell
    try:
        value = int(cell) if cell.isdigit() else cell  # "{:05d}" needs a number
        return path_format.format(value)
    except (ValueError, IndexError, KeyError) as e:
        raise LeukonetError(
            f"{labels_csv}:{row}: cannot apply --path-format {path_format!r} to {cell!r} ({e})"
        ) from None
