"""report(): one self-contained HTML page for a run (figures embedded as base64 PNGs)."""
import base64
import html
import io as _io
import json
from pathlib import Path

import pandas as pd

from leukonet import io
from leukonet.errors import LeukonetError
from leukonet.evaluate import plots

SECTIONS = ("Configuration", "Data", "Curves", "Metrics", "Confusion matrix", "Calibration",
            "Grad-CAM", "Top losses")
_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
img{max-width:100%}h2{border-bottom:1px solid #ddd;margin-top:2em}.verdict{font-weight:bold}
pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:auto}"""


def _img(fig):
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plots.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _png(path):
    return f'<img src="data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}">'


def _table(frame, index=True, floatfmt="{:.4f}"):
    return frame.to_html(index=index, float_format=floatfmt.format, border=0, na_rep="n/a")


def report(run, out=None, gradcam_images=6):
    from leukonet.data.audit import audit
    from leukonet.data.manifest import Manifest

    path = Path(run.path)
    parts = [f"<h1>leukonet run {html.escape(path.name)}</h1>"]
    parts.append("<h2>Configuration</h2><pre>" + html.escape(json.dumps(run.config.to_dict(), indent=2)) + "</pre>")
    val = None
    if (path / "train_manifest.csv").is_file():
        train = Manifest.read_csv(path / "train_manifest.csv")
        val = Manifest.read_csv(path / "val_manifest.csv")
        counts = pd.DataFrame({"train": train.frame["label"].value_counts(),
                               "validation": val.frame["label"].value_counts()}).fillna(0).astype(int)
        verdict = audit(train, val, names=["train", "validation"]).verdict
        parts.append("<h2>Data</h2>" + _table(counts) +
                     f'<p class="verdict">Leakage audit: {html.escape(verdict)}</p>')
    elif (path / "card.json").is_file():  # shipped weights: their card says what they saw
        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        rows = "".join(f"<li>{html.escape(f'{k}: {v}')}</li>" for k, v in card.get("data", {}).items())
        parts.append(f"<h2>Data</h2><p>{html.escape(card.get('scope', ''))}</p><ul>{rows}</ul>")
    history = run.history
    parts.append("<h2>Curves</h2>" + (_img(plots.curves(history)) if len(history) else "<p>no history</p>"))
    # a run's evaluations are in it; those of shipped weights in ./<name>/eval
    evals = sorted({m for d in {path, Path(run.out_dir)} if (d / "eval").is_dir()
                    for m in (d / "eval").glob("*/metrics.json")})
    metric_html, conf_html, cal_html, loss_html = [], [], [], []
    for m in evals:
        d, name = m.parent, m.parent.name
        data = json.loads(m.read_text())
        keys = ["images", "accuracy", "balanced_accuracy", "macro_f1", "top2_accuracy",
                "expected_calibration_error"]
        summary = pd.DataFrame([{k: data[k] for k in keys if k in data}], index=[name])
        per_class = pd.read_csv(d / "per_class.csv", index_col=0)
        metric_html.append(f"<h3>{html.escape(name)}</h3>" + _table(summary) + _table(per_class))
        for target, fname in ((conf_html, "confusion.png"), (cal_html, "reliability.png"),
                              (loss_html, "top_losses.png")):
            if (d / fname).is_file():
                target.append(f"<h3>{html.escape(name)}</h3>" + _png(d / fname))
    none = "<p>no evaluation yet: run <code>leukonet evaluate RUN --manifest test.csv --data-root DIR</code></p>"
    parts.append("<h2>Metrics</h2>" + ("".join(metric_html) or
                 _table(pd.DataFrame([run.metrics]).T.rename(columns={0: "validation"}))))
    parts.append("<h2>Confusion matrix</h2>" + ("".join(conf_html) or none))
    parts.append("<h2>Calibration</h2>" + ("".join(cal_html) or none))
    parts.append("<h2>Grad-CAM</h2>" + _gradcam(run, val, gradcam_images))
    parts.append("<h2>Top losses</h2>" + ("".join(loss_html) or none))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>leukonet {html.escape(path.name)}"
            f"</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>")
    out = Path(out) if out else Path(run.out_dir) / "report.html"
    io.write_text(out, page)
    return out


def _gradcam(run, val, n):
    if val is None:
        return "<p>no validation manifest in this folder (shipped weights)</p>"
    root = Path(run.config.data_root or "")
    files = [root / p for p in val.frame["path"].head(n)]
    files = [f for f in files if f.is_file()]
    if not files:
        return f"<p>validation images not found under {html.escape(str(root))}</p>"
    try:
        return _img(run.explain(files))  # the run's own input size and nucleus crop
    except LeukonetError as e:  # an ensemble whose members read images differently
        return f"<p>{html.escape(str(e))}</p>"
