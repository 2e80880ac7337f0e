"""The examples and the notebook run (in --smoke mode) so they cannot rot."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
pytestmark = pytest.mark.slow


def test_every_example_is_listed():
    # each script and the notebook has a row in the user guide's Examples table
    # (docs/examples.md, which README.md links; tests/test_docs.py checks the link)
    page = (EXAMPLES.parent / "docs" / "examples.md").read_text(encoding="utf-8")
    table = page.split("\n| file | what |", 1)[1].split("\n\n", 1)[0]
    for name in SCRIPTS + ["colab_quickstart.ipynb"]:
        assert f"| `{name}` |" in table, f"{name} is not in docs/examples.md's table"
    assert "transfer.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_smoke(script, tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--smoke", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def test_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(EXAMPLES / "colab_quickstart.ipynb", as_version=4)
    os.environ["LEUKONET_SMOKE"] = "1"
    try:
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["LEUKONET_SMOKE"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # figures shown inline
