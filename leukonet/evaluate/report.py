"""report(): one self-contained HTML page for a run (figures embedded as base64 PNGs).

It leads with what its reader wants: which data, which model, the headline metrics with
their interval over families, the per-class table and the confusion matrix; then the
details (curves, calibration, Grad-CAM for every class and for the top losses); the
configuration last, folded. It prints to PDF cleanly (print CSS; folded parts open).
"""
import base64
import html
import io as _io
import json
from pathlib import Path

import pandas as pd

from leukonet import io
from leukonet.errors import LeukonetError
from leukonet.evaluate import plots

SECTIONS = ("Summary", "Data", "Metrics", "Confusion matrix", "Curves", "Calibration",
            "Grad-CAM", "Top losses", "Configuration")
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
img{max-width:100%}h2{border-bottom:1px solid #ddd;margin-top:2em}.verdict{font-weight:bold}
.headline{font-size:1.35em;margin:.4em 0}.headline b{font-size:1.3em}.muted{color:#666}
.side{display:flex;gap:2em;align-items:flex-start;flex-wrap:wrap}.side>*{flex:1 1 380px}
pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto;white-space:pre-wrap}
@media print{body{max-width:none;margin:0;font-size:11pt}h2{break-after:avoid}
img,table,.side>*{break-inside:avoid;page-break-inside:avoid}img{max-height:24cm}
.side{display:block}}"""
# <details> prints folded: open them for printing
_PRINT_OPEN = ("<script>addEventListener('beforeprint',()=>document.querySelectorAll('details')"
               ".forEach(d=>d.open=true))</script>")
GRADCAM_PER_CLASS = 2
TOP_LOSSES = 6


def _img(fig):
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plots.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _png(path):
    return f'<img src="data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}">'


def _table(frame, index=True, floatfmt="{:.4f}"):
    return frame.to_html(index=index, float_format=floatfmt.format, border=0, na_rep="n/a")


def _evaluations(run):
    """[(name, folder, metrics)] of the run's evaluations, "test" first (a run's evaluations
    are in it; those of shipped weights in ./<name>/eval)."""
    path = Path(run.path)
    found = sorted({m for d in {path, Path(run.out_dir)} if (d / "eval").is_dir()
                    for m in (d / "eval").glob("*/metrics.json")})
    evals = [(m.parent.name, m.parent, json.loads(m.read_text())) for m in found]
    return sorted(evals, key=lambda e: (e[0] != "test", e[0]))


def _headline(name, m):
    fam = m.get("by_family") or {}
    ci = fam.get("accuracy_ci95_over_families")
    interval = (f" (95 % interval over {fam['families']} families: {ci[0]:.1%} to {ci[1]:.1%})"
                if ci else " (no families in this manifest: no interval)")
    d = m.get("domain")
    domain = ("" if d is None else
              f"; out of domain: {d['out_of_domain']} of {d['images']} images (unlike the "
              f"training images)" + (f", accuracy {d['accuracy_in_domain']:.1%} on those that pass"
                                     if d.get("accuracy_in_domain") is not None else ""))
    return (f'<p class="headline">{html.escape(name)}: accuracy <b>{m["accuracy"]:.1%}</b>'
            f'{interval}</p><p>balanced accuracy {m["balanced_accuracy"]:.1%}, macro-F1 '
            f'{m.get("macro_f1", float("nan")):.3f}, {m["images"]} images{domain} '
            f'<span class="muted">({html.escape(str(m.get("manifest", "")))})</span></p>')


def _model_line(run):
    c, m = run.config, run.metrics
    size = "x".join(str(s) for s in (c.image_size or [])) or "its default size"
    crop = f", nucleus crop {c.nucleus_crop:g}" if c.nucleus_crop else ""
    trained = (f"; best epoch {m['best_epoch']}" if m.get("best_epoch") else "")
    return (f"<p>Model: <b>{html.escape(str(c.backbone))}</b> with a {html.escape(str(c.head))} head, "
            f"input {size}{crop}, initial weights {html.escape(str(c.weights))}{trained}.</p>")


def _data(run, path, card):
    """(summary line, Data section, validation manifest or None); ``card``: the model card
    of shipped weights, else None."""
    from leukonet.data.audit import audit
    from leukonet.data.manifest import Manifest

    if (path / "train_manifest.csv").is_file():
        train = Manifest.read_csv(path / "train_manifest.csv")
        val = Manifest.read_csv(path / "val_manifest.csv")
        counts = pd.DataFrame({"train": train.frame["label"].value_counts(),
                               "validation": val.frame["label"].value_counts()}).fillna(0).astype(int)
        verdict = audit(train, val, names=["train", "validation"]).verdict

        def fams(m):
            return f", {m.frame['group'].nunique()} families" if m.has_groups else ""
        line = (f"<p>Data: {len(train)} training images{fams(train)} from "
                f"<code>{html.escape(str(run.config.manifest))}</code>, {len(val)} validation "
                f"images{fams(val)}; {len(counts)} classes.</p>")
        return line, _table(counts) + f'<p class="verdict">Leakage audit: {html.escape(verdict)}</p>', val
    if card is not None:
        rows = "".join(f"<li>{html.escape(f'{k}: {v}')}</li>" for k, v in card.get("data", {}).items())
        scope = html.escape(card.get("scope", ""))
        return f"<p>Data: {scope}</p>", f"<p>{scope}</p><ul>{rows}</ul>", None
    return "<p>Data: not recorded in this folder.</p>", "<p>not recorded</p>", None


def report(run, out=None, gradcam_images=GRADCAM_PER_CLASS):
    """Write the run's report page; ``gradcam_images``: Grad-CAM images per class."""
    path = Path(run.path)
    # shipped weights: their card says what they saw and how they scored
    card = (json.loads((path / "card.json").read_text(encoding="utf-8"))
            if (path / "card.json").is_file() else None)
    data_line, data_html, val = _data(run, path, card)
    evals = _evaluations(run)
    none = ("<p>no evaluation yet: run <code>leukonet evaluate RUN --manifest test.csv "
            "--data-root DIR</code></p>")
    summary = [data_line, _model_line(run)]
    if evals:
        name, d, m = evals[0]
        summary.append(_headline(name, m))
        side = [pd.read_csv(d / "per_class.csv", index_col=0).pipe(_table)]
        if (d / "confusion.png").is_file():
            side.append(_png(d / "confusion.png"))
        summary.append('<div class="side">' + "".join(f"<div>{s}</div>" for s in side) + "</div>")
        summary += [_headline(n, mm) for n, _, mm in evals[1:]]
    elif card is not None and "test_accuracy" in card.get("metrics", {}):
        m = card["metrics"]
        lo, hi = m.get("test_ci95_over_families", [float("nan")] * 2)
        summary.append(f'<p class="headline">test (from its model card): accuracy <b>'
                       f'{m["test_accuracy"]:.1%}</b> (95 % interval over families: {lo:.1%} to '
                       f'{hi:.1%}), {m.get("test_images", "?")} images</p>' + none)
    elif run.metrics.get("val_accuracy") is not None:
        summary.append(f'<p class="headline">validation accuracy <b>{run.metrics["val_accuracy"]:.1%}'
                       f"</b></p>" + none)
    else:
        summary.append(none)
    metric_html, conf_html, cal_html = [], [], []
    for name, d, m in evals:
        keys = ["images", "accuracy", "balanced_accuracy", "macro_f1", "top2_accuracy",
                "expected_calibration_error"]
        table = pd.DataFrame([{k: m[k] for k in keys if k in m}], index=[name])
        metric_html.append(f"<h3>{html.escape(name)}</h3>" + _table(table) +
                           _table(pd.read_csv(d / "per_class.csv", index_col=0)))
        for target, fname in ((conf_html, "confusion.png"), (cal_html, "reliability.png")):
            if (d / fname).is_file():
                target.append(f"<h3>{html.escape(name)}</h3>" + _png(d / fname))
    history = run.history
    config = json.dumps(run.config.to_dict(), indent=2)
    parts = [f"<h1>leukonet run {html.escape(path.name)}</h1>",
             "<h2>Summary</h2>" + "".join(summary),
             "<h2>Data</h2>" + data_html,
             "<h2>Metrics</h2>" + ("".join(metric_html) or _table(
                 pd.DataFrame([run.metrics]).T.rename(columns={0: "validation"}))),
             "<h2>Confusion matrix</h2>" + ("".join(conf_html) or none),
             "<h2>Curves</h2>" + (_img(plots.curves(history)) if len(history) else "<p>no history</p>"),
             "<h2>Calibration</h2>" + ("".join(cal_html) or none),
             "<h2>Grad-CAM</h2>" + _gradcam_by_class(run, val, gradcam_images),
             "<h2>Top losses</h2>" + ("".join(_top_losses(run, n, d, m) for n, d, m in evals) or none),
             f"<h2>Configuration</h2><details><summary>config.json ({len(run.config.to_dict())} "
             f"settings)</summary><pre>{html.escape(config)}</pre></details>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>leukonet {html.escape(path.name)}"
            f"</title><style>{_STYLE}</style>{_PRINT_OPEN}</head><body>{''.join(parts)}</body></html>")
    out = Path(out) if out else Path(run.out_dir) / "report.html"
    io.write_text(out, page)
    return out


def _explain(run, files, caption):
    """``caption`` and the Grad-CAM figure, or why there is none."""
    try:
        return f"<p>{caption}</p>" + _img(run.explain(files))  # the run's input size and crop
    except LeukonetError as e:  # an ensemble whose members read images differently
        return f"<p>{html.escape(str(e))}</p>"


def _gradcam_by_class(run, val, per_class):
    if val is None:
        return "<p>no validation manifest in this folder (shipped weights)</p>"
    root = Path(run.config.data_root or "")
    frame = val.frame
    files = [root / p for _, rows in frame.groupby("label", sort=True)
             for p in rows["path"].head(per_class)]
    files = [f for f in files if f.is_file()]
    if not files:
        return f"<p>validation images not found under {html.escape(str(root))}</p>"
    return _explain(run, files, f"{per_class} validation image(s) of every class.")


def _top_losses(run, name, d, m):
    head = f"<h3>{html.escape(name)}</h3>"
    predictions = d / "predictions.csv"
    if not predictions.is_file():
        return head + "<p>no predictions.csv in this evaluation</p>"
    frame = pd.read_csv(predictions)
    frame = frame[frame["predicted"].notna() & (frame["predicted"].astype(str) != "")]
    wrong = frame[frame["predicted"] != frame["label"]]
    if wrong.empty:
        return head + f"<p>no errors on {html.escape(name)}: {len(frame)} of {len(frame)} right.</p>"
    out = head + f"<p>{len(wrong)} of {len(frame)} wrong; the most confident mistakes first.</p>"
    if (d / "top_losses.png").is_file():
        out += _png(d / "top_losses.png")
    p_true = [row[f"p_{row['label']}"] if f"p_{row['label']}" in frame else 0.0
              for _, row in wrong.iterrows()]
    worst = wrong.assign(p_true=p_true).nsmallest(TOP_LOSSES, "p_true")
    root = Path(m.get("data_root") or run.config.data_root or "")
    files = [root / p for p in worst["path"] if (root / p).is_file()]
    if files:
        out += _explain(run, files, "Grad-CAM of the top losses:")
    return out
