"""Ablations: a grid of fit options, each cell an ordinary leukonet run in a sub-folder.

``ablate(base_config, grid, out)`` expands the grid (cartesian product, or the values in
step with ``zip=True``), runs every unfinished cell in a child process (so each cell's
peak memory is its own, and a crash in one cell cannot take the others down), evaluates
it on the test manifest when one is given (each cell's difference from the first, paired
over the manifest's families as ``leukonet compare`` does), and writes ``ablation.csv``
and a plot.
Finished cells (those with a ``metrics.json``) are skipped, so a killed ablation resumes.
"""
import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from leukonet import io
from leukonet.config import FitConfig, parse_size
from leukonet.errors import LeukonetError

EXTRA_AXES = {"fraction": float}  # a stratified, whole-family subset of the training manifest
_FIELDS = {f.name: f for f in dataclasses.fields(FitConfig)}
_NOT_AXES = {"run_dir", "name", "overwrite", "extra", "multitask", "manifest", "data_root",
             "val_manifest", "cache_dir"}


def valid_axes():
    return sorted((set(_FIELDS) - _NOT_AXES) | set(EXTRA_AXES))


def _convert(axis, text):
    if axis == "image_size":
        return parse_size(text)
    kind = EXTRA_AXES.get(axis) or _FIELDS[axis].type
    kind = kind.__name__ if isinstance(kind, type) else str(kind)  # "int", "float | None", ...
    try:
        if "bool" in kind:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if "int" in kind and "float" not in kind:
            return int(text)
        if "float" in kind:
            return float(text)
    except ValueError:
        raise LeukonetError(f"--grid {axis}: {text!r} is not a valid {kind.split('|')[0].strip()}") from None
    return None if text.lower() == "none" else text


def parse_grid(specs):
    """``["image_size=240x320,90x120", "batch_size=20,100"]`` → ``{axis: [values]}``."""
    grid = {}
    for spec in specs:
        if "=" not in spec:
            raise LeukonetError(f"--grid {spec!r}: expected axis=value1,value2,...")
        axis, values = spec.split("=", 1)
        axis = axis.strip().replace("-", "_")
        if axis not in valid_axes():
            raise LeukonetError(f"--grid {axis!r} is not a fit option; valid axes: {', '.join(valid_axes())}")
        grid[axis] = [_convert(axis, v.strip()) for v in values.split(",") if v.strip()]
        if not grid[axis]:
            raise LeukonetError(f"--grid {axis}: no values")
    return grid


def expand(grid, zip_axes=False):
    """The cells: a list of ``{axis: value}`` dicts."""
    axes = list(grid)
    if zip_axes:
        lengths = {len(v) for v in grid.values()}
        if len(lengths) > 1:
            raise LeukonetError("--zip needs every --grid axis to have the same number of values "
                                f"(got {', '.join(f'{a}: {len(v)}' for a, v in grid.items())})")
        combos = zip(*grid.values())
    else:
        combos = itertools.product(*grid.values())
    return [dict(zip(axes, c)) for c in combos]


def _value_text(v):
    return "x".join(map(str, v)) if isinstance(v, list) else str(v)


def cell_name(i, cell):
    text = "_".join(f"{a}-{_value_text(v)}" for a, v in cell.items())
    return f"cell{i:03d}_" + re.sub(r"[^A-Za-z0-9_.x-]+", "-", text)


def check_cell(base, cell):
    """Static checks (the dry run): backbone, head, sizes, positive numbers."""
    from leukonet.models.heads import HEADS
    from leukonet.models.registry import check_size, get_backbone

    from leukonet.models.user_backbone import is_file

    config = base.replace(**{k: v for k, v in cell.items() if k in _FIELDS})
    spec = None if is_file(config.backbone) else get_backbone(config.backbone)  # your own: fit checks it
    if config.head not in HEADS:
        raise LeukonetError(f"unknown head {config.head!r}; choose one of: {', '.join(HEADS)}")
    size = parse_size(config.image_size)
    if isinstance(size, list) and spec is not None:
        check_size(spec, size)
    for name in ("batch_size", "epochs"):
        if getattr(config, name) <= 0:
            raise LeukonetError(f"{name} {getattr(config, name)}: must be positive")
    if "fraction" in cell and not 0 < cell["fraction"] <= 1:
        raise LeukonetError(f"fraction {cell['fraction']}: expected (0, 1]")
    return config


def plan(base, grid, zip_axes=False):
    cells = expand(grid, zip_axes)
    for i, cell in enumerate(cells):
        try:
            check_cell(base, cell)
        except LeukonetError as e:
            raise LeukonetError(f"cell {i} ({_describe(cell)}): {e}") from None
    return cells


def _describe(cell):
    return ", ".join(f"{a}={_value_text(v)}" for a, v in cell.items())


def estimate(base, cells, train_images):
    """Image-epochs per cell, scaled by pixels relative to 96x128 (a rough cost unit)."""
    rows = []
    for cell in cells:
        config = base.replace(**{k: v for k, v in cell.items() if k in _FIELDS})
        size = parse_size(config.image_size)
        pixels = size[0] * size[1] if isinstance(size, list) else 96 * 128
        n = train_images * cell.get("fraction", 1.0)
        rows.append(dict(cell=_describe(cell), image_epochs=int(n * config.epochs),
                         relative_cost=round(n * config.epochs * pixels / (96 * 128) / 1000, 1)))
    return pd.DataFrame(rows)


def ablate(base, grid, out, zip_axes=False, test_manifest=None, overwrite=False, log=print):
    """Run the grid; returns the ablation table (also written to ``out/ablation.csv``)."""
    out = Path(out)
    cells = plan(base, grid, zip_axes)
    spec = dict(grid={a: [_value_text(v) for v in vals] for a, vals in grid.items()}, zip=zip_axes,
                base=base.to_dict(), test_manifest=str(test_manifest) if test_manifest else None)
    stamp = out / "ablation.json"
    if stamp.is_file() and not overwrite:
        old = json.loads(stamp.read_text())
        differ = [k for k in ("grid", "zip", "test_manifest") if old.get(k) != spec[k]]
        differ += [f"--{k.replace('_', '-')}" for k, v in spec["base"].items()
                   if old.get("base", {}).get(k) != v]
        if differ:
            raise LeukonetError(f"{out}: holds an ablation with another grid or options "
                                f"({', '.join(differ)}); pass --overwrite or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    io.write_json(stamp, spec)
    rows = []
    from leukonet.console import progress

    bar = progress(len(cells), "ablation", "cell")  # rate and time left over the cells
    for i, cell in enumerate(cells):
        run_dir = out / cell_name(i, cell)
        row = dict(cell=i, **{a: _value_text(v) for a, v in cell.items()})
        if (run_dir / "metrics.json").is_file():
            log(f"[{i + 1}/{len(cells)}] {_describe(cell)}: finished earlier, skipped")
        else:
            log(f"[{i + 1}/{len(cells)}] {_describe(cell)} -> {run_dir}")
            row.update(_run_cell(base, cell, run_dir, out, test_manifest))
        row.update(_collect(run_dir, test_manifest))
        if test_manifest and i > 0:
            row.update(_against_first(out / cell_name(0, cells[0]), run_dir, test_manifest))
        rows.append(row)
        table = pd.DataFrame(rows)
        io.write_csv(out / "ablation.csv", table)  # after every cell: a kill loses nothing
        bar.update()
    bar.close()
    table = pd.DataFrame(rows)
    _plot(table, list(grid), out)
    return table


def _cell_config(base, cell, run_dir, out):
    config = base.replace(**{k: v for k, v in cell.items() if k in _FIELDS},
                          run_dir=str(run_dir), name=None, overwrite=True)
    if "fraction" in cell and cell["fraction"] < 1:
        from leukonet.data.manifest import Manifest

        sub = Manifest.read_csv(config.manifest).subsample(cell["fraction"], seed=config.seed)
        path = out / "subsets" / f"train_{cell['fraction']:g}_seed{config.seed}.csv"
        sub.to_csv(path, overwrite=True, rejects=False)
        config = config.replace(manifest=str(path))
    return config


def _child(args, log_path):
    """Run ``python -m leukonet ARGS``; returns (exit code, peak RSS in MiB of that child)."""
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "leukonet", *args], stdout=logf, stderr=logf)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024  # KiB on Linux


def _run_cell(base, cell, run_dir, out, test_manifest):
    start = time.perf_counter()
    result = dict(error="")
    try:
        config = _cell_config(base, cell, run_dir, out)
    except LeukonetError as e:
        return dict(error=str(e))
    log_path = out / f"{run_dir.name}.log"
    if (run_dir / "state.json").is_file() and (run_dir / "config.json").is_file():
        args = ["fit", "--resume", str(run_dir)]  # killed mid-cell: continue it
    else:
        cfg = out / f"{run_dir.name}.config.json"
        io.write_json(cfg, config.to_dict())
        args = ["fit", "--config", str(cfg), "--run-dir", str(run_dir), "--overwrite"]
    code, peak = _child(args, log_path)
    result.update(wall_seconds=round(time.perf_counter() - start, 1), peak_rss_mib=round(peak))
    if code != 0:
        result["error"] = _last_error(log_path).removeprefix("error: ") or f"fit exited with status {code}"
        return result
    if test_manifest:
        code, _ = _child(["evaluate", str(run_dir), "--manifest", str(test_manifest),
                          "--data-root", str(config.data_root)], log_path)
        if code != 0:
            result["error"] = _last_error(log_path).removeprefix("error: ") or f"evaluate exited with status {code}"
    return result


def _last_error(log_path):
    lines = Path(log_path).read_text(errors="replace").splitlines()
    errors = [l for l in lines if l.startswith("error: ") or "Error" in l.split(":")[0]]
    return errors[-1] if errors else ""


def _collect(run_dir, test_manifest):
    row = {}
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        row.update(val_accuracy=m.get("val_accuracy"), val_loss=m.get("val_loss"),
                   epochs_run=m.get("epochs_run"), best_epoch=m.get("best_epoch"),
                   train_seconds=m.get("train_seconds"))
        if m.get("train_seconds"):
            row["images_per_s"] = round(m["train_images"] * (m.get("epochs_run") or 0) / m["train_seconds"], 1)
    if test_manifest:
        t = run_dir / "eval" / Path(test_manifest).stem / "metrics.json"
        if t.is_file():
            m = json.loads(t.read_text())
            row.update(test_accuracy=m["accuracy"], test_balanced_accuracy=m["balanced_accuracy"])
    return row


def _against_first(first_dir, run_dir, test_manifest):
    """The cell's test accuracy minus the first cell's, paired image by image, with a 95 %
    interval over the test manifest's families (``leukonet compare``); blank when either
    cell has no evaluation."""
    from leukonet.evaluate.compare import compare

    try:
        r = compare(run_dir, first_dir, eval_name=Path(test_manifest).stem)
    except LeukonetError:  # no evaluation of one of them (a failed cell)
        return {}
    low, high = r.get("difference_ci95", [None, None])
    return dict(test_minus_first=r["difference"], test_minus_first_ci95_low=low,
                test_minus_first_ci95_high=high)


def summarise(table, axes):
    """Mean ± std of the accuracies over seeds (when seed is an axis), else the table."""
    score = [c for c in ("test_accuracy", "val_accuracy") if c in table]
    if "seed" not in axes or not score:
        return table
    keys = [a for a in axes if a != "seed"] or ["cell"]
    agg = table.groupby(keys)[score].agg(["mean", "std"])
    out = pd.DataFrame(index=agg.index)
    for s in score:
        out[s] = [f"{m:.4f} ± {d:.4f}" for m, d in zip(agg[(s, "mean")], agg[(s, "std")].fillna(0))]
    out["seeds"] = table.groupby(keys).size()
    return out.reset_index()


def _plot(table, axes, out):
    from leukonet.evaluate import plots

    score = next((c for c in ("test_accuracy", "val_accuracy") if c in table and table[c].notna().any()), None)
    if score is None:
        return None
    plt = plots._pyplot()
    axes = [a for a in axes if a != "seed"]
    data = table.dropna(subset=[score])
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(axes) == 2:
        pivot = data.groupby(axes)[score].mean().unstack(axes[1])
        im = ax.imshow(pivot.to_numpy(dtype=float), cmap="viridis")
        ax.set_xticks(range(len(pivot.columns)), pivot.columns)
        ax.set_yticks(range(len(pivot.index)), pivot.index)
        ax.set_xlabel(axes[1])
        ax.set_ylabel(axes[0])
        for (r, c), v in pd.DataFrame(pivot.to_numpy()).stack().items():
            ax.text(c, r, f"{v:.3f}", ha="center", va="center", color="w")
        fig.colorbar(im, label=score)
    elif len(axes) == 1:
        series = data.groupby(axes[0], sort=False)[score].mean()
        ax.plot(range(len(series)), series.to_numpy(), marker="o")
        ax.set_xticks(range(len(series)), series.index)
        ax.set_xlabel(axes[0])
        ax.set_ylabel(score)
    else:
        ax.bar(range(len(data)), data[score])
        ax.set_xlabel("cell")
        ax.set_ylabel(score)
    ax.set_title(f"{score} by cell")
    fig.tight_layout()
    path = plots.save(fig, out / "ablation.png")
    plots.close(fig)
    return path
