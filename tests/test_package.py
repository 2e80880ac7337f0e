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
