"""What the command line shows: verbosity (-q / -v), progress bars, and TensorFlow's
native log lines kept off the console.

Imports nothing heavy (no Keras, no TensorFlow): the manifest commands use it too.
"""
import logging
import os
import re
import sys
import threading

QUIET, NORMAL, VERBOSE = -1, 0, 1
_level = NORMAL


def set_verbosity(level):
    """-1 quiet (warnings, errors and each command's result), 0 normal, 1 verbose (also
    Keras' own progress lines, TensorFlow's native log and leukonet's debug lines). The
    console shows log lines from ``console_level()`` up; a run's train.log keeps its
    INFO lines whatever the console shows."""
    global _level
    _level = int(level)
    logging.getLogger("leukonet").setLevel(logging.DEBUG if _level >= VERBOSE else logging.INFO)


def verbosity():
    return _level


def console_level():
    """The lowest log level the console shows."""
    return {QUIET: logging.WARNING, NORMAL: logging.INFO}.get(_level, logging.DEBUG)


def progress(total=None, desc="", unit="it", leave=True):
    """A tqdm progress bar (rate and time left) on stderr; off when stderr is not a terminal
    (logs, CI, notebooks' captured output) and with -q."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=leave, dynamic_ncols=True,
                disable=True if _level <= QUIET else None, file=sys.stderr)


class Progress:
    """Adapter for the library's ``progress(done, total)`` callbacks: the bar opens on the
    first call and closes when done reaches total."""

    def __init__(self, desc, unit="images"):
        self.desc, self.unit, self.bar = desc, unit, None

    def __call__(self, done, total):
        if self.bar is None:
            self.bar = progress(total, self.desc, self.unit)
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---- TensorFlow's native log ---------------------------------------------------------
# TensorFlow's C++ code logs through absl to file descriptor 2 before absl is initialised,
# so TF_CPP_MIN_LOG_LEVEL cannot silence those lines ("WARNING: All log messages before
# absl::InitializeLog() ...", oneDNN and CUDA notes, and "E0000 ... failed call to
# cuInit", which looks like a failure on every machine without a GPU). Only the file
# descriptor can be filtered: its writes go through a pipe, a thread drops the lines in
# absl's format and passes everything else on.
_NATIVE = re.compile(rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] |"
                     rb"WARNING: All log messages before absl::InitializeLog\(\))")
_filter = None


def is_native_log(line: bytes) -> bool:
    """Whether ``line`` is one of TensorFlow's (absl's) native log lines."""
    return bool(_NATIVE.match(line))


class _NativeLogFilter:
    def __init__(self):
        sys.stderr.flush()
        self.original = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        # Python's own stderr writes go straight to the terminal, not through the pipe:
        # an error printed just before exit is never left in a buffer.
        self.stream = open(os.dup(self.original), "w", encoding=sys.stderr.encoding or "utf-8",
                           errors="backslashreplace", buffering=1)
        self.saved_stderr = sys.stderr
        if _is_fd2(sys.stderr):
            sys.stderr = self.stream
        self.read = read
        self.thread = threading.Thread(target=self._pump, name="leukonet-native-log", daemon=True)
        self.thread.start()

    def _pump(self):
        with os.fdopen(self.read, "rb", buffering=0) as pipe:
            pending = b""
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not is_native_log(line):
                        os.write(self.original, line + b"\n")
            if pending and not is_native_log(pending):
                os.write(self.original, pending)

    def close(self):
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self.original, 2)  # closes the pipe's last write end: the thread sees EOF
        self.thread.join(timeout=2)
        if sys.stderr is self.stream:
            sys.stderr = self.saved_stderr
        self.stream.close()
        os.close(self.original)


def _is_fd2(stream):
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def quiet_native_logs():
    """Filter TensorFlow's native log lines out of file descriptor 2 from now until
    ``restore_native_logs()`` (the CLI calls both; -v leaves them be). Idempotent."""
    global _filter
    if _filter is None:
        _filter = _NativeLogFilter()


def restore_native_logs():
    global _filter
    if _filter is not None:
        _filter.close()
        _filter = None
