"""What lets a killed run go on where it stopped, beside Keras' BackupAndRestore: the
images checked unchanged (``_verify_data``), the epoch the backup restores
(``_restored_epoch``), history.csv cut back to it (``_trim_history``) and the training clock
carried over (``_training_clock``).

May import: pandas, leukonet.io, leukonet.errors, leukonet.data and leukonet.train.run.
"""
import time

import pandas as pd

from leukonet import io
from leukonet.errors import LeukonetError
from leukonet.train.run import read_history


def _verify_data(run_dir, data):
    """On resume: the images must be the ones the run started with (same sha1)."""
    from concurrent.futures import ThreadPoolExecutor

    from leukonet.data import scan
    from leukonet.data.images import file_sha1

    frame = pd.concat([data["train"].frame, data["val"].frame])
    if "sha1" not in frame:
        return

    def same(item):
        rel, sha1 = item
        try:
            return file_sha1(scan.resolve(data["root"], rel)) == sha1
        except OSError:
            return False

    with ThreadPoolExecutor(4) as pool:
        ok = list(pool.map(same, zip(frame["path"], frame["sha1"])))
    changed = [p for p, good in zip(frame["path"], ok) if not good]
    if changed:
        raise LeukonetError(f"{len(changed)} image(s) changed or missing since {run_dir.path} started "
                            f"(first: {changed[0]}); restore them, or start a new run")


def _trim_history(run_dir, from_epoch):
    """Drop history rows of epochs that will run again (a kill after the CSV row was
    written but before the backup was): the resumed history has no repeated epoch."""
    history = read_history(run_dir.history)
    if len(history) and (history["epoch"] > from_epoch).any():  # epochs count from 1
        io.write_csv(run_dir.history, history[history["epoch"] <= from_epoch])


def _training_clock(state):
    """``() -> seconds``: this process's training time so far plus that of the sessions
    before a ``--resume`` (recorded in state.json at each epoch end)."""
    before, start = float(state.get("train_seconds", 0.0)), time.perf_counter()
    return lambda: before + time.perf_counter() - start


def _restored_epoch(run_dir, stage, default):
    """The epoch BackupAndRestore will resume this stage from."""
    meta = run_dir.backup / f"stage{stage}" / "training_metadata.json"
    if meta.is_file():
        import json

        return int(json.loads(meta.read_text())["epoch"])
    return default
