"""benchmarks/gpu.py --quick (on JAX, SYNTHETIC data) and benchmarks/gpu_probe.py still run
and write what the GPU machine's run will be read by. No timing is asserted."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _run(args, cwd, env=None):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_gpu_benchmark_quick_mode(tmp_path):
    pytest.importorskip("jax", reason="gpu.py --quick runs on JAX (pip install -e '.[dev]')")
    committed = BENCH / "results" / "gpu.json"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    out = _run([str(BENCH / "gpu.py"), "--quick", "--out", str(tmp_path / "out")], tmp_path,
               env={"KERAS_BACKEND": "jax"})
    assert "images/s" in out  # it printed its table
    result = json.loads((tmp_path / "out" / "gpu.json").read_text())
    assert result["machine"]["backend"] == "jax" and result["quick"]
    configs = {r["config"] for r in result["rows"]}
    assert len(configs) == 2
    for row in result["rows"]:
        assert "skipped" not in row, row
        assert row["images_per_s_memory"] > 0 and row["images_per_s_loader"] > 0, row
        assert row["ratio_loader_memory"] > 0
        assert set(row["images_per_s_loader_by_workers"]) == {"1", "2"}
    mixed = [r for r in result["rows"] if r["precision"] != "float32"]
    assert {r["precision"] for r in mixed} == {"mixed_bfloat16", "mixed_float16"}
    # mixed precision engaged: convolutions in the half type, softmax output in float32
    assert all(r["conv_compute_dtypes"] == [r["precision"].removeprefix("mixed_")] for r in mixed)
    assert all(r["output_dtype"] == "float32" for r in result["rows"])
    assert result["mixed_speedup"]
    training = result["training"]
    assert 0 <= training["test_accuracy"] <= 1
    assert training["epochs_run"] == 1 and training["test_images"] > 0
    # --quick never writes the GPU machine's results
    assert (committed.stat().st_mtime_ns if committed.exists() else None) == before


def test_gpu_probe(tmp_path):
    out = _run([str(BENCH / "gpu_probe.py"), "--out", str(tmp_path / "probe.json")], tmp_path)
    assert "probe took" in out
    probe = json.loads((tmp_path / "probe.json").read_text())
    for name in ("numpy", "pandas", "sklearn", "scipy", "matplotlib", "PIL", "simplejpeg", "cv2",
                 "keras", "jax"):
        assert name in probe["packages"], name
        assert "ok" in probe["packages"][name]
    assert probe["packages"]["numpy"]["ok"]  # this interpreter runs the tests: it has numpy
    assert {"jax devices", "keras on jax (a train step)", "leukonet (on jax)"} <= set(probe["checks"])
    assert probe["cpus"] >= 1 and "repo" in probe["disk"]
