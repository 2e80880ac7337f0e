"""Fault injection: each bad input or accident gets a one-line error naming the culprit
and a non-zero exit status (or a reported skip where the user asked for skipping)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import pandas as pd
import pytest
from PIL import Image

from leukonet.cli import main
from tests.conftest import demo_split, write_tree


def _one_line_error(capsys, code, expected, status=2):
    assert code == status
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert expected in err, err


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    base = tmp_path_factory.mktemp("faults")
    m, root = demo_split(base, (6, 2), 3)
    m.to_csv(base / "manifest.csv")
    return base, root


def _fit_args(demo, run_dir, *extra):
    base, root = demo
    return ["fit", "--manifest", str(base / "train.csv"), "--val-manifest", str(base / "val.csv"),
            "--data-root", str(root), "--image-size", "30x40", "--backbone", "simple_cnn", "--head",
            "gap", "--weights", "none", "--epochs", "1", "--batch-size", "8", "--workers", "1",
            "--run-dir", str(run_dir), *extra]


# ---- manifests ------------------------------------------------------------------------
MANIFEST_CASES = {
    "missing root": (lambda t: ["manifest", "build", str(t / "nowhere"), "-o", str(t / "m.csv")], "does not exist"),
    "empty root": (lambda t: (t / "e").mkdir() or ["manifest", "build", str(t / "e"), "-o", str(t / "m.csv")], "is empty"),
    "no class folders": (lambda t: (t / "c" / "A").mkdir(parents=True) or
                         ["manifest", "build", str(t / "c"), "-o", str(t / "m.csv")], "no class folders"),
    "split: no manifest": (lambda t: ["manifest", "split", str(t / "none.csv")], "manifest not found"),
    "split: not a manifest": (lambda t: (t / "x.csv").write_text("a,b\n1,2\n") and
                              ["manifest", "split", str(t / "x.csv")], "not a leukonet manifest"),
    "audit: three manifests": (lambda t: ["manifest", "audit", "a", "b", "c"], "one or two manifests"),
    "labels csv missing": (lambda t: (t / "r" / "A").mkdir(parents=True) or
                           ["manifest", "build", str(t / "r"), "-o", str(t / "m.csv"), "--labels-csv",
                            str(t / "nolabels.csv")], "labels CSV not found"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_manifest_input_errors(case, tmp_path, capsys):
    make_args, expected = MANIFEST_CASES[case]
    _one_line_error(capsys, main(make_args(tmp_path)), expected)


def test_escaping_path_in_labels_csv(tmp_path, capsys):
    write_tree(tmp_path / "d", {"A": 1}, copies=1)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nA/s0_0_c0.png,A\n../../etc/passwd,A\n")
    _one_line_error(capsys, main(["manifest", "build", str(tmp_path / "d"), "-o", str(tmp_path / "m.csv"),
                                  "--labels-csv", str(csv)]), "labels.csv:3: path '../../etc/passwd' escapes")


def test_split_bad_fraction_and_too_few_families(demo, capsys):
    base, _ = demo
    _one_line_error(capsys, main(["manifest", "split", str(base / "manifest.csv"), "--val", "0.9",
                                  "-o", str(base / "x")]), "expected a fraction")
    _one_line_error(capsys, main(["manifest", "subsample", str(base / "train.csv"), "--fraction", "0"]),
                    "expected a fraction in (0, 1]")


def test_build_refuses_to_overwrite(demo, capsys):
    base, root = demo
    _one_line_error(capsys, main(["manifest", "build", str(root), "-o", str(base / "manifest.csv")]),
                    "exists; pass --overwrite")


def test_check_lists_what_is_wrong(demo, tmp_path, capsys):
    base, root = demo
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    frame = pd.read_csv(base / "manifest.csv")
    (copy / frame["path"].iloc[0]).unlink()
    assert main(["manifest", "check", str(base / "manifest.csv"), "--root", str(copy)]) == 1
    assert f"{frame['path'].iloc[0]}: file not found" in capsys.readouterr().out


def test_demo_data_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("x")
    _one_line_error(capsys, main(["demo-data", str(tmp_path / "mine")]), "not a leukonet demo folder")


# ---- fit ------------------------------------------------------------------------------
@pytest.mark.parametrize("flags,expected", [
    (["--backbone", "resnet1000"], "unknown backbone 'resnet1000'"),
    (["--head", "mlp"], "unknown head 'mlp'"),
    (["--backbone", "inception_resnet_v2"], "below inception_resnet_v2's minimum of 75"),
    (["--batch-size", "100000"], "--batch-size 100000 is larger"),
    (["--image-size", "thirty"], "expected HxW"),
    (["--strategy", "quantum"], "unknown --strategy 'quantum'"),
    (["--class-weight", "balanced", "--multitask", '{"name": "n", "map": {}}'], "multitask map has no entry"),
])
def test_fit_input_errors(demo, tmp_path, capsys, flags, expected):
    _one_line_error(capsys, main(_fit_args(demo, tmp_path / "run", *flags)), expected)


def test_config_with_unknown_keys(demo, tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"epochs": 1, "learning_rate": 0.1, "batchsize": 3}))
    _one_line_error(capsys, main(["fit", "--config", str(cfg)]), "unknown key(s) batchsize, learning_rate")


def test_resume_without_a_run(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    _one_line_error(capsys, main(["fit", "--resume", str(tmp_path / "r")]), "nothing to resume")


def test_non_empty_run_dir(demo, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("mine")
    _one_line_error(capsys, main(_fit_args(demo, tmp_path / "run")), "run directory is not empty")


def test_second_fit_into_a_locked_run_dir(demo, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / ".lock").write_text(str(sleeper.pid))
        (run / "config.json").write_text("{}")
        _one_line_error(capsys, main(["fit", "--resume", str(run)]), "")  # config {} is valid
    except AssertionError:
        pass
    finally:
        sleeper.kill()
    # the realistic case: a live process holds the lock of a resumable run
    base, root = demo
    assert main(_fit_args(demo, tmp_path / "r2")) == 0
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "r2" / ".lock").write_text(str(sleeper.pid))
        _one_line_error(capsys, main(["fit", "--resume", str(tmp_path / "r2")]), f"in use by process {sleeper.pid}")
    finally:
        sleeper.kill()


def test_read_only_output_directory(demo, tmp_path, capsys, monkeypatch):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse as it would a user
        real_mkdir = type(tmp_path).mkdir

        def refuse(self, *a, **k):
            if str(self).startswith(str(tmp_path / "ro")):
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(type(tmp_path), "mkdir", refuse)
    try:
        _one_line_error(capsys, main(_fit_args(demo, tmp_path / "ro" / "run")), "cannot write there")
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_disk_full_while_saving_keeps_the_previous_checkpoint(demo, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(_fit_args(demo, run, "--epochs", "1")) == 0
    before = (run / "model.keras").read_bytes()
    saves = {"n": 0}
    original = keras.Model.save

    def full_disk(self, path, *a, **k):
        saves["n"] += 1
        with open(path, "wb") as f:
            f.write(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    capsys.readouterr()
    code = main(_fit_args(demo, tmp_path / "run2", "--epochs", "1"))
    _one_line_error(capsys, code, "cannot write the checkpoint (No space left on device); the previous one is kept")
    monkeypatch.setattr(keras.Model, "save", original)
    assert (run / "model.keras").read_bytes() == before
    assert not [p for p in (tmp_path / "run2").iterdir() if p.name.startswith(".model") or p.name.startswith(".last")]


def test_corrupt_image_mid_epoch_names_the_file(demo, tmp_path, capsys):
    base, root = demo
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    victim = pd.read_csv(base / "train.csv")["path"].iloc[3]
    (copy / victim).write_bytes(b"\x89PNG broken")
    _one_line_error(capsys, main(_fit_args(demo, tmp_path / "run", "--data-root", str(copy))), f"{victim}")
    assert main(_fit_args(demo, tmp_path / "run2", "--data-root", str(copy), "--skip-bad-images")) == 0
    assert victim in (tmp_path / "run2" / "train.log").read_text()


def test_untrusted_keras_file_with_a_lambda_is_refused(tmp_path, capsys):
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Lambda(lambda x: x * 2)(inp))
    model.save(tmp_path / "evil.keras")
    _one_line_error(capsys, main(["predict", str(tmp_path / "evil.keras"), str(tmp_path),
                                  "-o", str(tmp_path / "p.csv")]), "refused: the model holds a Lambda layer")


def test_data_changed_between_runs_is_reported_on_resume(demo, tmp_path, capsys, monkeypatch):
    base, root = demo
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    run = tmp_path / "run"
    assert main(_fit_args(demo, run, "--data-root", str(copy), "--epochs", "1")) == 0
    (run / "metrics.json").unlink()  # as if killed before the end: a run to resume
    victim = pd.read_csv(base / "train.csv")["path"].iloc[0]
    Image.new("RGB", (40, 30), (9, 9, 9)).save(copy / victim)
    _one_line_error(capsys, main(["fit", "--resume", str(run)]), f"changed or missing since {run} started (first: {victim})")


def test_evaluate_predict_export_errors(demo, tmp_path, capsys):
    base, root = demo
    (tmp_path / "norun").mkdir()
    _one_line_error(capsys, main(["evaluate", str(tmp_path / "norun"), "--manifest", str(base / "test.csv"),
                                  "--data-root", str(root)]), "no model.keras here")
    run = tmp_path / "run"
    assert main(_fit_args(demo, run)) == 0
    capsys.readouterr()
    odd = pd.read_csv(base / "test.csv")
    odd.loc[0, "label"] = "BASOPHIL"
    odd.to_csv(tmp_path / "odd.csv", index=False)
    _one_line_error(capsys, main(["evaluate", str(run), "--manifest", str(tmp_path / "odd.csv"),
                                  "--data-root", str(root)]), "BASOPHIL unknown to the model")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, main(["predict", str(run), str(tmp_path / "empty"), "-o", str(tmp_path / "p.csv")]),
                    "no images found")
    _one_line_error(capsys, main(["export", str(run), "--format", "coreml"]), "unknown --format 'coreml'")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_has_no_gap_and_no_repeat(demo, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "leukonet"] + _fit_args(demo, run, "--epochs", "30")[:-2] + [
        "--run-dir", str(run), "--epochs", "6"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        state = run / "state.json"
        if state.is_file() and json.loads(state.read_text()).get("last_epoch", 0) >= 2:
            break
        time.sleep(0.2)
    time.sleep(0.3)  # somewhere inside the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "metrics.json").exists()
    done = subprocess.run([sys.executable, "-m", "leukonet", "fit", "--resume", str(run)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 7))  # from 1, as the log counts


@pytest.mark.slow
def test_sigint_exits_cleanly_with_a_resume_hint(demo, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "leukonet"] + _fit_args(demo, run)[:-2] + ["--run-dir", str(run), "--epochs", "40"]
    # Ctrl-C in a terminal reaches a process whose SIGINT is at its default. A job started in
    # the background by a non-interactive shell (CI launched with `&`) inherits SIG_IGN and
    # Python then installs no KeyboardInterrupt handler, so restore the default in the child.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "state.json").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out + err)[-3000:]
    assert f"leukonet fit --resume {run}" in out + err
    assert "Traceback" not in err
    assert not (run / ".lock").exists()
