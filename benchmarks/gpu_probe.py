"""Probe a machine before benchmarks/gpu.py: Python, JAX and its devices, CUDA/cuDNN as JAX
reports them, nvidia-smi, whether Keras imports on JAX, leukonet's dependencies, disk, CPUs.

    python benchmarks/gpu_probe.py [--out benchmarks/results/gpu_probe.json]

Each import runs in a child process of its own with a time limit, in parallel: a missing
package, a broken CUDA install or a hanging import is reported, never fatal. Under a minute.
Writes the JSON and prints a short table.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_ROOT = REPO.parent / "shared" / "datasets" / "blood-cells" / "images"
LIMIT_S = 45  # per child process
# module -> what it is to leukonet (setup.cfg); keras and leukonet are imported on JAX
PACKAGES = {
    "numpy": "core", "pandas": "core", "sklearn": "core", "scipy": "core (via scikit-learn)",
    "matplotlib": "core", "PIL": "core", "simplejpeg": "core", "cv2": "core", "h5py": "core (via keras)",
    "keras": "core", "jax": "backend", "jaxlib": "backend", "tensorflow": "backend (setup.cfg asks for it)",
    "torch": "backend (unused)", "psutil": "dev", "pytest": "dev",
}
# the child's code for one import: its version, or the error's last line
_IMPORT = """
import importlib, json, sys
m = importlib.import_module(sys.argv[1])
print(json.dumps({"version": str(getattr(m, "__version__", "") or "")}))
"""
_LEUKONET = """
import json, keras
import leukonet, leukonet.data.loader, leukonet.models.build, leukonet.train.fit
print(json.dumps({"version": leukonet.__version__, "keras_backend": keras.backend.backend()}))
"""
_JAX = """
import json, time
import jax, jax.numpy as jnp, jaxlib
from jax._src import lib
out = {"version": jax.__version__, "jaxlib": jaxlib.__version__, "default_backend": jax.default_backend(),
       "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()]}
versions = getattr(lib, "cuda_versions", None)  # None without the CUDA plugin
if versions is not None:
    for name in dir(versions):
        if name.endswith("_version"):
            try:
                out[name] = getattr(versions, name)()
            except Exception as e:
                out[name] = f"{type(e).__name__}: {e}"
try:
    out["environment"] = jax.print_environment_info(return_string=True)
except Exception as e:
    out["environment"] = f"{type(e).__name__}: {e}"
for dtype in ("float32", "bfloat16"):  # the device computes, in both precisions gpu.py times
    x = jnp.ones((2048, 2048), dtype)
    (x @ x).block_until_ready()
    start = time.perf_counter()
    for _ in range(10):
        y = x @ x
    y.block_until_ready()
    out[f"matmul_2048_{dtype}_tflops"] = round(10 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e12, 2)
print(json.dumps(out))
"""
_KERAS_JAX = """
import json, numpy as np, keras
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, activation="softmax")])
model.compile("adam", "categorical_crossentropy", jit_compile=True)
loss = model.train_on_batch(np.ones((4, 8), "float32"), np.eye(4, dtype="float32"))
print(json.dumps({"version": keras.__version__, "backend": keras.backend.backend(),
                  "devices": [str(d) for d in keras.distribution.list_devices()],
                  "train_step": "ok", "loss": float(np.ravel(loss)[0])}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE / "results" / "gpu_probe.json"))
    args = p.parse_args(argv)
    start = time.perf_counter()
    jobs = {name: (_IMPORT, [name]) for name in PACKAGES}
    jobs.update({"leukonet (on jax)": (_LEUKONET, []), "jax devices": (_JAX, []),
                 "keras on jax (a train step)": (_KERAS_JAX, [])})
    with ThreadPoolExecutor(len(jobs)) as pool:  # all at once: the probe ends within LIMIT_S or so
        children = dict(zip(jobs, pool.map(lambda job: _child(*job), jobs.values())))
    result = dict(date=time.strftime("%Y-%m-%d %H:%M"), python=sys.version.split()[0],
                  executable=sys.executable, platform=platform.platform(), cpus=os.cpu_count(),
                  cpus_usable=len(os.sched_getaffinity(0)), memory=_meminfo(), disk=_disk(),
                  nvidia_smi=_nvidia_smi(), data_root=dict(path=str(DATA_ROOT), present=DATA_ROOT.is_dir()),
                  packages={name: dict(children[name], role=PACKAGES[name]) for name in PACKAGES},
                  checks={name: children[name] for name in children if name not in PACKAGES})
    result["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    _print(result)
    print(f"wrote {out}")


def _child(code, argv):
    """Run ``code`` in a fresh Python on the JAX backend; its JSON line, or why it failed."""
    # no preallocation: the children share the GPU (JAX would take 75 % of it in each)
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": os.pathsep.join(
               filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                              timeout=LIMIT_S, env=env, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return dict(ok=False, error=f"no answer in {LIMIT_S} s")
    seconds = round(time.perf_counter() - start, 1)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            return dict(ok=True, seconds=seconds, **json.loads(lines[-1]))
        except ValueError:
            pass
    tail = (proc.stderr.strip().splitlines() or ["exit status " + str(proc.returncode)])[-1]
    return dict(ok=False, seconds=seconds, error=tail[:300])


def _nvidia_smi():
    if not shutil.which("nvidia-smi"):
        return dict(present=False)
    out = dict(present=True)
    for key, cmd in (("gpus", ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used,"
                               "compute_cap", "--format=csv,noheader"]), ("header", ["nvidia-smi"])):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            text = proc.stdout.strip() or proc.stderr.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            text = f"{type(e).__name__}: {e}"
        out[key] = text.splitlines()[:12] if key == "header" else text.splitlines()
    return out


def _disk():
    out = {}
    for name, path in (("repo", REPO), ("tmp", Path(tempfile.gettempdir()))):
        try:
            usage = shutil.disk_usage(path)
            out[name] = dict(path=str(path), free_gib=round(usage.free / 2**30, 1),
                             total_gib=round(usage.total / 2**30, 1))
        except OSError as e:
            out[name] = dict(path=str(path), error=str(e))
    return out


def _meminfo():
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    values = {line.split(":")[0]: int(line.split()[1]) for line in lines if line.split()[1:]}
    return {k: round(values[k] / 2**20, 1) for k in ("MemTotal", "MemAvailable") if k in values}


def _print(r):
    jax = r["checks"]["jax devices"]
    print(f"python {r['python']}, {r['cpus']} CPUs ({r['cpus_usable']} usable), memory GiB {r['memory']}, "
          f"free disk GiB: " + ", ".join(f"{k} {v.get('free_gib')}" for k, v in r["disk"].items()))
    smi = r["nvidia_smi"]
    print("nvidia-smi: " + ("; ".join(smi.get("gpus", [])) if smi["present"] else "not found"))
    if jax.get("ok"):
        cuda = {k: v for k, v in jax.items() if k.endswith("_version")}
        print(f"jax {jax['version']} ({jax['default_backend']}): {', '.join(jax['devices'])}; "
              f"CUDA/cuDNN as JAX reports them: {cuda or 'none (no CUDA plugin)'}; matmul TFLOP/s "
              f"float32 {jax.get('matmul_2048_float32_tflops')}, bfloat16 {jax.get('matmul_2048_bfloat16_tflops')}")
    print(f"data root {r['data_root']['path']}: {'present' if r['data_root']['present'] else 'absent'}")
    print(f"{'check':<30} {'ok':<4} version / error")
    for name, value in [*r["packages"].items(), *r["checks"].items()]:
        detail = value.get("version") or value.get("error") or ""
        if name == "keras on jax (a train step)" and value.get("ok"):
            detail = f"{value['version']}, backend {value['backend']}, devices {value['devices']}"
        print(f"{name:<30} {'yes' if value.get('ok') else 'NO':<4} {detail}")
    print(f"probe took {r['seconds']} s")


if __name__ == "__main__":
    main()
