"""Figures (matplotlib, headless): image grids; written atomically."""
from pathlib import Path

from leukonet import io


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def image_grid(rows, path, col_titles=None, row_titles=None, cell=1.6):
    """Save a grid of uint8 RGB images (``rows`` = list of lists) as a PNG."""
    plt = _pyplot()
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j])
            if i == 0 and col_titles:
                ax.set_title(col_titles[j], fontsize=8)
        if row_titles:
            axes[i][0].text(-0.05, 0.5, row_titles[i], transform=axes[i][0].transAxes,
                            rotation=90, va="center", ha="right", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
