"""Shipped weights: models leukonet trained itself, inside the package, by name.

Named like timm's ``architecture.tag`` (``simple_cnn_wide.pbc_v1``: the backbone, then the
data and version), with short aliases (``pbc``) for the current one, like torchvision's
``DEFAULT``. Each is a folder shaped like a run (``model.keras``, ``config.json``,
``classes.json``, ``metrics.json``) plus its model card (``card.json`` and ``README.md``),
so the same folder is a ready classifier (``Run``: predict, explain, evaluate, report) and
a backbone to fine-tune from (``--weights pbc``: the backbone kept, a new head). The
sha256 of ``model.keras`` lives here, in code, and is checked at every load: a truncated
file or a Git LFS pointer in its place is one clear line, not a Keras traceback.
"""
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from leukonet.compat import no_array_copy_warning
from leukonet.errors import LeukonetError

FOLDER = Path(__file__).resolve().parents[1] / "weights"


@dataclass(frozen=True)
class ShippedWeights:
    name: str  # backbone.tag
    backbone: str  # the registry name its backbone is built as
    sha256: str  # of model.keras
    summary: str  # one line for `leukonet backbones`
    aliases: tuple = ()


WEIGHTS = {w.name: w for w in [
    ShippedWeights(
        "simple_cnn_wide.pbc_v1", "simple_cnn_wide",
        "f0f1b760280dfd7562d8d03b70d7b4b92126345e325bc93e53201a3d2a207307",
        "8 PBC classes (CellaVision DM96, MGG), nucleus crop 0.6 at 128x128; PBC TEST 97.1 %", aliases=("pbc",)),
]}
ALIASES = {alias: w.name for w in WEIGHTS.values() for alias in w.aliases}


def canonical(name):
    """The full name of shipped weights ``name`` (an alias or the name itself), or None."""
    name = str(name)
    return name if name in WEIGHTS else ALIASES.get(name)


def named(source):
    """The full name when ``source`` means shipped weights: a name or alias with no run
    folder or model file of that name here. ``./pbc/`` holding only what `leukonet evaluate
    pbc` wrote (eval/, report.html) is not a run: the name still means the weights."""
    full = canonical(source)
    path = Path(str(source))
    if full is None or path.is_file() or (path / "config.json").is_file():
        return None
    return full


def backbone_of(weights):
    """The backbone shipped weights ``weights`` were trained with (None: not shipped), so
    that ``--weights pbc`` alone picks its architecture."""
    full = named(weights) if weights is not None else None
    return WEIGHTS[full].backbone if full else None


def list_weights():
    return list(WEIGHTS.values())


def for_backbone(backbone):
    """Names (with aliases) of the shipped weights of ``backbone``, for listings."""
    return [w.name.split(".", 1)[1] + (f" ({', '.join(w.aliases)})" if w.aliases else "")
            for w in WEIGHTS.values() if w.backbone == backbone]


def folder(name) -> Path:
    """The checked folder of shipped weights ``name``; a one-line error when the name is
    unknown, the file is missing or its sha256 is not the one recorded here."""
    full = canonical(name)
    if full is None:
        known = ", ".join(sorted(set(WEIGHTS) | set(ALIASES)))
        raise LeukonetError(f"unknown weights {name!r}; shipped: {known}")
    path = FOLDER / full
    _check(path / "model.keras", WEIGHTS[full].sha256)
    return path


def card(name) -> dict:
    """The model card of shipped weights ``name`` (card.json)."""
    return json.loads((folder(name) / "card.json").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=8)
def _matches(path, size, mtime, expected):
    """Whether a file's sha256 is ``expected`` (cached per size and time: one read a process)."""
    return sha256(path) == expected


def _check(path, expected):
    if not path.is_file():
        raise LeukonetError(f"{path}: the shipped model file is missing; reinstall leukonet "
                            "(a wheel or source tree without its package data)")
    stat = path.stat()
    if not _matches(str(path), stat.st_size, stat.st_mtime_ns, expected):
        raise LeukonetError(f"{path}: its sha256 is not the one leukonet shipped ({expected[:12]}"
                            "...): the file is damaged or replaced (a Git LFS pointer?); "
                            "reinstall leukonet")


def sha256(path) -> str:
    """Hex sha256 of a file (for recording new weights)."""
    from leukonet import io

    return io.file_digest(path, "sha256")


def write_folder(run_dir, name, card_fields, out=FOLDER, config_changes=None):
    """Make the shipped folder ``out/name`` from a finished run: its model without the
    optimizer state (a third of the file, useless to a user), config, classes, metrics,
    ``card.json`` (``card_fields`` plus sizes and the sha256) and a README rendered from
    the card. Returns the sha256 to record in ``WEIGHTS``."""
    import keras

    import leukonet.models.preprocessing  # noqa: F401 - registers Preprocess
    from leukonet import io

    run_dir, target = Path(run_dir), Path(out) / name
    # compile=False: no optimizer, so none in the saved file (clone_model would keep it)
    clean = keras.saving.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
    with io.atomic_path(target / "model.keras") as tmp:
        with no_array_copy_warning():
            clean.save(tmp)
    for file in ("classes.json", "metrics.json", "history.csv"):
        if (run_dir / file).is_file():  # history.csv: the report's curves
            io.write_bytes(target / file, (run_dir / file).read_bytes())
    # the config without this machine's paths: where the run and its cache lived means
    # nothing elsewhere; ``config_changes`` gives the data paths as a user types them
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    io.write_json(target / "config.json", dict(config, run_dir=None, cache_dir=None,
                                               **(config_changes or {})))
    digest = sha256(target / "model.keras")
    card_data = dict(name=name, **card_fields, num_params=int(clean.count_params()),
                     file_size=(target / "model.keras").stat().st_size, sha256=digest)
    io.write_json(target / "card.json", card_data)
    io.write_text(target / "README.md", render_card(card_data))
    return digest


def render_card(card_data) -> str:
    """The model card as Markdown (README.md beside the weights), from card.json alone."""
    m = card_data.get("metrics", {})
    lines = [f"# {card_data['name']}", "", card_data.get("description", ""), "",
             f"**Scope.** {card_data.get('scope', '')}", "",
             "| | |", "| --- | --- |"]
    for key in ("backbone", "image_size", "nucleus_crop", "preprocessing", "classes",
                "num_params", "file_size", "sha256", "license"):
        if key in card_data:
            value = card_data[key]
            lines.append(f"| {key} | {', '.join(map(str, value)) if isinstance(value, list) else value} |")
    lines += ["", "## Results", ""]
    for key, value in m.items():
        lines.append(f"- {key}: {value}")
    lines += ["", "## Data", ""]
    for key, value in card_data.get("data", {}).items():
        lines.append(f"- {key}: {value}")
    if card_data.get("domain_check"):  # leukonet.evaluate.domain
        lines += ["", "## Out-of-domain check", ""]
        lines += [f"- {key}: {value}" for key, value in card_data["domain_check"].items()]
    lines += ["", "## Reproduce", "", "```bash", card_data.get("recipe", ""), "```", "",
              "## Use", "", "```bash", *card_data.get("usage", []), "```", "",
              "## Citation", "", card_data.get("citation", ""), ""]
    return "\n".join(lines)
