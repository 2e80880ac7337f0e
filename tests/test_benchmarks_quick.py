"""The benchmark scripts still run (--quick). No timing is asserted: they are not tests."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BLOOD_CELLS

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("script", ["fit_overhead.py", "feature_cache.py", "loader.py", "soak.py",
                                    "cpu_allocator.py", "originals_labels.py", "transfer.py"])
def test_benchmark_quick_mode(script, tmp_path):
    if script in ("loader.py", "originals_labels.py") and not BLOOD_CELLS.is_dir():
        pytest.skip(f"{script} reads the blood-cells set (../shared absent)")
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True,
                          text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.strip()  # it printed its table
