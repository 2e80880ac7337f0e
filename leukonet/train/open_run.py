"""Opening a run folder, and where leukonet's log lines go: ``open_run_dir`` creates (or
reopens) and locks a run directory and logs to its train.log for the block; ``_console``
puts the log lines on the console (once); ``_log_file_only`` writes a line to train.log
alone.

May import: the standard library and leukonet.errors; nothing from leukonet.train.
"""
import contextlib
import logging
import sys

from leukonet import console
from leukonet.errors import LeukonetError


@contextlib.contextmanager
def open_run_dir(run_dir, overwrite, resume):
    """Create (or reopen) and lock ``run_dir`` and log to its train.log for the block; a
    folder that cannot be written is a one-line error. Afterwards the log handler is
    removed and the lock released (also used by ``--ensemble`` and ``--folds``)."""
    try:
        run_dir.prepare(overwrite=overwrite, resume=resume)
        handler = _log_to(run_dir.log)
    except PermissionError as e:
        raise LeukonetError(f"{run_dir.path}: cannot write there ({e.strerror}); choose a writable "
                            "--run-dir") from None
    try:
        yield
    finally:
        logging.getLogger("leukonet").removeHandler(handler)
        handler.close()
        run_dir.unlock()


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (notebooks and test runners swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass

    def filter(self, record):
        """-q / -v (leukonet.console) decide what the console shows, train.log keeps all."""
        return record.levelno >= console.console_level() and super().filter(record)


def _log_file_only(message):
    """A line for train.log only (the run's file handlers), not the console."""
    for handler in logging.getLogger("leukonet").handlers:
        if isinstance(handler, logging.FileHandler):
            handler.emit(logging.LogRecord("leukonet", logging.ERROR, "", 0, message, None, None))


def _console():
    """leukonet's log lines on the console (once)."""
    logger = logging.getLogger("leukonet")
    logger.setLevel(min(logging.INFO, console.console_level()))
    if not any(isinstance(h, logging.StreamHandler) and getattr(h, "_leukonet", False)
               for h in logger.handlers):
        handler = _CurrentStdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._leukonet = True
        logger.addHandler(handler)
    return logger


def _log_to(path):
    logger = _console()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return handler
