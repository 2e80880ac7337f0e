"""Atomic file writes: every artifact leukonet writes goes through here.

A file is written to a temporary name in the same directory, flushed to disk and then
renamed into place, so a crash or a full disk never leaves a half-written model, CSV
or JSON behind: the reader sees the old file or the new one.
"""
import contextlib
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def atomic_path(path, fsync=True):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    For writers that insist on a file name (``model.save``, ``fig.savefig``,
    ``DataFrame.to_csv``). The temporary keeps the suffix so format sniffing works.
    ``fsync=False`` skips the flush to disk (milliseconds per file): only for data that
    can be made again and whose reader detects a torn file, like the loader's pixel cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    # mkstemp creates 0600; give the file the permissions a plain open() would.
    with _UMASK_LOCK:  # reading the umask sets it; two threads interleaving would leave it 0
        umask = os.umask(0)
        os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path, text: str):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj, indent=2):
    write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


def write_csv(path, frame, **kwargs):
    """Write a pandas DataFrame as CSV atomically (``index=False`` unless given)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def file_digest(path, algorithm="sha256") -> str:
    """Hex digest of a file read in 1 MiB chunks (hashlib.file_digest needs Python 3.11)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
