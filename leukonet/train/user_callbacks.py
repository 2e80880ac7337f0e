"""Your own Keras callbacks beside leukonet's: ``leukonet.fit(..., callbacks=[...])`` and
``leukonet fit --callback module:Name={json kwargs}``.

They run after leukonet's own list (so they see the epoch's logs and the checkpoint already
written), in every model a run trains: the single model, each ensemble member, each fold
model. A callback is stored in the config (``callbacks``: ``{"class": "module:QualName",
"kwargs": {...}}``) when its class is importable by that path and ``get_config()`` gives the
keyword arguments that rebuild it; ``--resume`` rebuilds the stored ones. One that cannot
be stored runs in this process only, and fit says so in one warning line.

In the process that was given instances, those very instances run (whatever they collect is
the caller's); a stored spec equal to a given instance's is not built again beside it.

May import: the standard library, leukonet.errors, and Keras inside the functions; nothing
from leukonet.train.
"""
import importlib
import json
import logging

from leukonet.errors import LeukonetError

log = logging.getLogger("leukonet")


def given(callbacks):
    """``callbacks`` as given to fit: a list of ``keras.callbacks.Callback`` instances (one
    alone is taken as a list of one); anything else is refused in one line."""
    if not callbacks:
        return []
    import keras

    if isinstance(callbacks, keras.callbacks.Callback):
        return [callbacks]
    out = list(callbacks)
    for c in out:
        if not isinstance(c, keras.callbacks.Callback):
            raise LeukonetError(f"callbacks: {c!r} is not a keras.callbacks.Callback instance; "
                                "pass instances, e.g. callbacks=[keras.callbacks.CSVLogger("
                                "'log.csv')]")
    return out


def spec_of(callback):
    """The stored form of ``callback`` (``{"class": "module:QualName", "kwargs": {...}}``),
    or None when it cannot be rebuilt in another process."""
    cls = type(callback)
    path = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return None  # a script's or a notebook's class: another process has no such module
    get_config = getattr(callback, "get_config", None)
    if not callable(get_config):
        return None
    try:
        kwargs = json.loads(json.dumps(get_config()))  # as config.json will give them back
        if not isinstance(kwargs, dict) or _class(path) is not cls:
            return None
        cls(**kwargs)
    except Exception:  # noqa: BLE001 - whatever fails, it cannot be stored
        return None
    return {"class": path, "kwargs": kwargs}


def record(config, callbacks):
    """``config`` with the stored form of each of ``callbacks`` that has one (a spec already
    in the config is not added twice)."""
    specs = list(config.callbacks or [])
    for spec in filter(None, map(spec_of, callbacks)):
        if spec not in specs:
            specs.append(spec)
    return config.replace(callbacks=specs or None) if specs != list(config.callbacks or []) else config


def check(specs):
    """Build each stored spec once, so a bad one is refused before training starts."""
    for spec in specs or []:
        build(spec)


def warn_unstored(callbacks, run_path):
    """One warning line naming the given callbacks that cannot be stored with the run."""
    names = [type(c).__name__ for c in callbacks if spec_of(c) is None]
    if names:
        log.warning("warning: callback%s %s cannot be stored with the run (no importable class "
                    "whose get_config() rebuilds it): %s in this process only; after a kill, "
                    "pass %s again: leukonet.fit(resume=%r, callbacks=[...])",
                    "s" if len(names) > 1 else "", ", ".join(names),
                    "they run" if len(names) > 1 else "it runs",
                    "them" if len(names) > 1 else "it", str(run_path))


def for_model(specs, callbacks):
    """The user callbacks one model trains with: the stored specs built afresh (but those of
    the given instances), then the given instances."""
    callbacks = list(callbacks or [])
    covered = [s for s in map(spec_of, callbacks) if s]
    return [build(s) for s in specs or [] if s not in covered] + callbacks


def parse(text):
    """``--callback`` text, ``module:Name`` or ``module:Name={json kwargs}``, as a spec."""
    path, eq, raw = str(text).partition("=")
    path = path.strip()
    module, colon, name = path.partition(":")
    if not (module and colon and name):
        raise LeukonetError(f"--callback {text}: expected module:Name or module:Name={{json "
                            "kwargs}} (e.g. --callback keras.callbacks:CSVLogger='{\"filename\": "
                            "\"log.csv\"}')")
    kwargs = {}
    if eq:
        try:
            kwargs = json.loads(raw)
        except ValueError as e:
            raise LeukonetError(f"--callback {path}: its keyword arguments are not JSON ({e}); "
                                "write them as a JSON object, e.g. "
                                f"--callback {path}='{{\"filename\": \"log.csv\"}}'") from None
        if not isinstance(kwargs, dict):
            raise LeukonetError(f"--callback {path}: its keyword arguments must be a JSON object "
                                f"{{\"name\": value, ...}}, not {raw.strip()}")
    return {"class": path, "kwargs": kwargs}


def build(spec):
    """A callback from its spec, or a one-line error naming ``--callback`` and the fix."""
    import keras

    if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
        raise LeukonetError(f"callbacks: {spec!r}: expected {{\"class\": \"module:Name\", "
                            "\"kwargs\": {...}}")
    path, kwargs = spec["class"], spec.get("kwargs") or {}
    module, _, name = path.partition(":")
    if not (module and name):
        raise LeukonetError(f"--callback {path}: expected module:Name (e.g. "
                            "keras.callbacks:CSVLogger)")
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise LeukonetError(f"--callback {path}: cannot import {module} ({e}); install it or put "
                            "its folder on PYTHONPATH") from None
    try:
        cls = _class(path)
    except AttributeError:
        raise LeukonetError(f"--callback {path}: module {module} has no {name}; check the name "
                            "after the colon") from None
    if not (isinstance(cls, type) and issubclass(cls, keras.callbacks.Callback)):
        raise LeukonetError(f"--callback {path}: not a keras.callbacks.Callback class")
    try:
        return cls(**kwargs)
    except Exception as e:  # noqa: BLE001 - a constructor raises what it likes
        first = str(e).splitlines()[0] if str(e) else ""
        raise LeukonetError(f"--callback {path}: {name}(**{json.dumps(kwargs)}) failed "
                            f"({type(e).__name__}: {first}); fix its keyword arguments") from None


def _class(path):
    module, _, name = path.partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj
