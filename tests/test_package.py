import os
import subprocess
import sys


def _env_after_import(value):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    if value is not None:
        env["TF_CPU_ALLOCATOR_USE_BFC"] = value
    code = "import os, leukonet; print(os.environ.get('TF_CPU_ALLOCATOR_USE_BFC'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def test_import_turns_on_tensorflows_pooling_cpu_allocator_unless_the_user_chose():
    assert _env_after_import(None) == "true"
    assert _env_after_import("false") == "false"


def test_wheel_carries_the_shipped_weights_and_the_demo_sample(tmp_path):
    """`pip install` (not only -e) gets what `fit --demo` and `--weights pbc` read."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(tmp_path), str(repo)], capture_output=True, text=True)
    if done.returncode:
        import pytest

        pytest.skip(f"cannot build a wheel here: {done.stderr.strip()[-300:]}")
    wheel = next(tmp_path.glob("leukonet-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    sample = repo / "leukonet" / "data" / "sample_blood_cells"
    wanted = {p.relative_to(repo).as_posix() for p in sample.rglob("*") if p.is_file()}
    wanted |= {p.relative_to(repo).as_posix() for p in (repo / "leukonet" / "weights").rglob("*")
               if p.is_file()}
    assert len(wanted) > 500
    assert wanted <= names, sorted(wanted - names)[:5]


def test_a_warning_from_leukonet_code_fails_the_test_suite():
    """setup.cfg's filterwarnings turns warnings raised in leukonet modules into errors,
    so a new one fails the test that triggers it; others' warnings stay warnings."""
    import warnings

    import pytest

    code = compile("import warnings\nwarnings.warn('new', UserWarning)", "leukonet/x.py", "exec")
    with pytest.raises(UserWarning):
        exec(code, {"__name__": "leukonet.somewhere"})
    with warnings.catch_warnings(record=True):
        exec(code, {"__name__": "somebody_else"})  # not an error
