"""Benchmark for a GPU machine: training images/s fed by leukonet's loader and from memory,
with and without mixed precision, then one real training of the published recipe.

    KERAS_BACKEND=jax python benchmarks/gpu.py [--data-root DIR] [--train-minutes 4]
    python benchmarks/gpu.py                          # TensorFlow (+ CUDA): Keras' default backend
    python benchmarks/gpu.py --quick [--out DIR]      # CPU check, JAX, SYNTHETIC data, < 1 min

For each config (inception_resnet_v2 + conv head at 240x320, batch 20 and 64; vgg16 + gap
head and resnet50 + conv head at 224x224, batch 64), built as ``leukonet fit`` builds it
(weights none, ``--jit``), and each precision (float32; mixed precision, bfloat16 unless
--mixed-policy says otherwise; on the first config also ``mixed_float16``, which is what
leukonet's own ``--mixed-precision`` sets), one ``model.fit`` per feed, each a fixed
number of steps after warm-up steps (JIT compile, thread start, queue fill) that are not
timed:

- memory: a few of the loader's own training batches, made once and put where the backend
  keeps tensors (device memory on JAX), cycled: the model step alone;
- memory + step sync: the same with leukonet's NanGuard callback, which reads the loss
  every step (as every ``leukonet fit`` does);
- loader: leukonet's ManifestLoader as ``leukonet fit`` builds it (JPEG files on disk,
  default augmentation), for each --workers count; the best, and loader / memory (target
  >= 0.9 at 240x320); then the most workers again with a queue of twice as many batches
  (the loader's default queue is 4 batches whatever the worker count);
- with --check-no-jit, also ``--no-jit`` (XLA off; memory feed, float32), what leukonet did
  by default before 2026-12-05.

A step ends, for the clock, when its logs reach the host, read in Keras' callback threads
while the next steps are dispatched (on TensorFlow, whose Keras runs batch callbacks in
the training thread, every timed step then ends with a sync, as with NanGuard).

Then ``leukonet.fit`` of the recipe (inception_resnet_v2, conv head, 240x320, batch 20,
blood-cells train/val manifests, from scratch, ``--jit --mixed-precision``) for as many
epochs as fit in --train-minutes by the measured rate, and ``Run.evaluate`` on TEST (accuracy
and its 95 % interval over families). --minutes bounds the whole: configs that would start
after the time left for timing are skipped (said in the row); rerun them with --configs.
Writes benchmarks/results/gpu.json (--quick: --out DIR/gpu.json, a temporary folder by
default). Not a test: nothing here asserts a time.
"""
import argparse
import contextlib
import gc
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_ROOT = REPO.parent / "shared" / "datasets" / "blood-cells" / "images"
DEFAULT_MANIFESTS = REPO / "data_manifests" / "blood-cells"
PUBLISHED_TEST_ACCURACY = 0.8832  # ImageNet-pretrained InceptionResNetV2 (README.md); ours is from scratch

CONFIGS = [  # name, backbone, head, (height, width), batch
    ("irv2_conv_240x320_b20", "inception_resnet_v2", "conv", (240, 320), 20),
    ("irv2_conv_240x320_b64", "inception_resnet_v2", "conv", (240, 320), 64),
    ("vgg16_gap_224_b64", "vgg16", "gap", (224, 224), 64),
    ("resnet50_conv_224_b64", "resnet50", "conv", (224, 224), 64),
]
QUICK_CONFIGS = [
    ("simple_cnn_conv_30x40_b8", "simple_cnn", "conv", (30, 40), 8),
    ("simple_cnn_gap_30x40_b16", "simple_cnn", "gap", (30, 40), 16),
]
LEUKONET_MIXED = "mixed_float16"  # what FitConfig(mixed_precision=True) sets (train/trainer.py)
MEMORY_BATCHES = 4  # distinct batches cycled by the in-memory feed
CHECKPOINT_WRITES = 3  # per epoch: last.keras, model.keras when it improves, the backup


def main(argv=None):
    args = _parse(argv)
    _choose_backend(args.quick)
    from leukonet.errors import LeukonetError

    try:
        run(args)
    except LeukonetError as e:
        raise SystemExit(f"error: {e}") from None


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="CPU check on JAX: SYNTHETIC demo data, simple_cnn at 30x40, a few steps")
    p.add_argument("--out", help="folder for gpu.json (default benchmarks/results; --quick: a temp folder)")
    p.add_argument("--data-root", default=str(DEFAULT_ROOT), help="blood-cells images (TRAIN/, TEST/)")
    p.add_argument("--manifests", default=str(DEFAULT_MANIFESTS), help="folder of train/val/test.csv")
    p.add_argument("--configs", help="comma-separated config names to time (default all)")
    p.add_argument("--parts", default="timing,train", help="timing, train or both")
    p.add_argument("--workers", default="4,8,16", help="loader worker counts to sweep")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per fit")
    p.add_argument("--steps", type=int, default=30, help="timed steps per fit")
    p.add_argument("--mixed-policy", default="mixed_bfloat16", choices=["mixed_bfloat16", "mixed_float16"],
                   help="mixed precision of the timing rows (bfloat16: no loss scaling, native on "
                        "Ampere/Hopper and TPUs)")
    p.add_argument("--no-augment", action="store_true",
                   help="timing rows without augmentation (the training keeps leukonet's default)")
    p.add_argument("--check-no-jit", action="store_true",
                   help="also time --no-jit (XLA off) on the recipe's config, float32, "
                        "memory feed (on JAX: op by op, each op compiled on first use; ~10 s even "
                        "for --quick's simple_cnn on 2 CPU cores, minutes for inception_resnet_v2)")
    p.add_argument("--train-minutes", type=float, default=4.0, help="wall time to size the training by")
    p.add_argument("--train-precision", default="mixed", choices=["mixed", "float32"],
                   help="mixed: leukonet's --mixed-precision (mixed_float16)")
    p.add_argument("--minutes", type=float, default=8.0, help="budget for the whole script")
    p.add_argument("--jax-cache", default=str(Path(tempfile.gettempdir()) / "leukonet-jax-cache"),
                   help="JAX persistent compilation cache ('none': off); reruns skip compiling")
    args = p.parse_args(argv)
    args.parts = {s.strip() for s in args.parts.split(",") if s.strip()}
    if not args.parts <= {"timing", "train"} or not args.parts:
        p.error("--parts: timing, train or timing,train")
    args.workers = [int(w) for w in args.workers.split(",")]
    if args.quick:
        args.workers, args.warmup, args.steps = [1, 2], 1, 3
    if args.warmup < 1 or args.steps < 1 or min(args.workers) < 1:
        p.error("--warmup, --steps and --workers: 1 or more")
    return args


def _choose_backend(quick):
    """--quick runs on JAX, the backend a GPU machine without TensorFlow has; otherwise the
    backend is Keras' own choice (KERAS_BACKEND, ~/.keras/keras.json). Set before Keras is
    imported: it fixes the backend then."""
    if not quick:
        return
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "jax":
            raise SystemExit(f"error: --quick runs on JAX, but Keras is already imported with the "
                             f"{keras.backend.backend()} backend; run it in a fresh process")
    os.environ["KERAS_BACKEND"] = "jax"


# ---- the run ------------------------------------------------------------------------
def run(args):
    import keras

    from leukonet import io

    start = time.perf_counter()
    configs = _pick(QUICK_CONFIGS if args.quick else CONFIGS, args.configs)
    reserve = args.train_minutes + 1.5 if "train" in args.parts else 0.0  # compile, checkpoints, TEST
    deadline = math.inf if args.quick else start + 60 * (args.minutes - reserve)
    out = Path(args.out or (tempfile.mkdtemp(prefix="leukonet-gpu-") if args.quick else HERE / "results"))
    with tempfile.TemporaryDirectory(prefix="leukonet-gpu-") as tmp:
        if keras.backend.backend() == "jax" and args.jax_cache != "none":
            _jax_compilation_cache(Path(tmp) / "jax-cache" if args.quick else args.jax_cache)
        paths = _quick_data(Path(tmp)) if args.quick else _blood_cells(args)
        data = _data(paths)
        machine = _machine()
        print(f"backend {machine['backend']}, devices {machine.get('devices')}, "
              f"{machine['cpus']} CPUs; {len(data['train'])} training images", flush=True)
        rows = []
        if "timing" in args.parts:
            for spec in configs:
                for precision in _precisions(spec, args):
                    rows.append(_timed_row(spec, precision, data, args, deadline))
                    print(_row_line(rows[-1]), flush=True)
        training = _train_recipe(args, paths, rows, data, Path(tmp)) if "train" in args.parts else None
    result = dict(machine=machine, date=time.strftime("%Y-%m-%d %H:%M"), quick=args.quick,
                  settings=dict(warmup_steps=args.warmup, timed_steps=args.steps, workers=args.workers,
                                augment=not args.no_augment, mixed_policy=args.mixed_policy,
                                memory_feed=_memory_feed_kind(), jit=True, minutes=args.minutes,
                                train_minutes=args.train_minutes, train_precision=_train_policy(args),
                                data_root=str(paths["root"])),
                  rows=rows, mixed_speedup=_speedups(rows, args.mixed_policy), training=training,
                  total_seconds=round(time.perf_counter() - start, 1))
    io.write_json(out / "gpu.json", result)
    _print_table(result)
    print(f"wrote {out / 'gpu.json'}")


def _pick(configs, names):
    if not names:
        return configs
    wanted = [n.strip() for n in names.split(",")]
    known = {c[0] for c in configs}
    unknown = sorted(set(wanted) - known)
    if unknown:
        from leukonet.errors import LeukonetError

        raise LeukonetError(f"--configs {', '.join(unknown)}: unknown; choose from {', '.join(sorted(known))}")
    return [c for c in configs if c[0] in wanted]


def _precisions(spec, args):
    """float32 and --mixed-policy everywhere; on the recipe's config also leukonet's own
    --mixed-precision policy (the training's, so its compiled step may come from the cache)."""
    recipe = spec == _recipe_spec(args)
    if args.quick and not recipe:
        return ["float32"]  # --quick: mixed precision on one config is enough to check the code
    out = ["float32", args.mixed_policy]
    if recipe and LEUKONET_MIXED not in out:
        out.append(LEUKONET_MIXED)
    return out


def _jax_compilation_cache(folder):
    """XLA programs kept on disk: a rerun, and the training whose step matches a timed one,
    skip the compile (tens of seconds for inception_resnet_v2)."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# ---- data ---------------------------------------------------------------------------
def _blood_cells(args):
    from leukonet.errors import LeukonetError

    root, folder = Path(args.data_root), Path(args.manifests)
    if not root.is_dir():
        raise LeukonetError(f"--data-root {root}: no such folder (the blood-cells images, TRAIN/ and TEST/)")
    paths = dict(root=root, **{k: folder / f"{k}.csv" for k in ("train", "val", "test")})
    missing = [str(p) for k, p in paths.items() if k != "root" and not p.is_file()]
    if missing:
        raise LeukonetError(f"--manifests {folder}: missing {', '.join(missing)}")
    return paths


def _quick_data(folder):
    """SYNTHETIC demo images and their group-aware split, as tests/conftest.py's demo_split."""
    from leukonet.data.demo import make_demo_data
    from leukonet.data.manifest import Manifest

    root = make_demo_data(folder / "data", sources_per_class=(12, 3), copies_per_source=4,
                          image_size=(30, 40))
    m = Manifest.from_folder(root).dedup().group()
    for name, part in m.split(val=0.25, seed=0).items():
        part.to_csv(folder / f"{name}.csv", overwrite=True, rejects=False)
    return dict(root=root, **{k: folder / f"{k}.csv" for k in ("train", "val", "test")})


def _data(paths):
    """Training and validation rows as ``leukonet fit`` resolves them."""
    from leukonet.config import FitConfig
    from leukonet.train.run_data import _resolve_data

    return _resolve_data(FitConfig(manifest=str(paths["train"]), val_manifest=str(paths["val"]),
                                   data_root=str(paths["root"])))


def _train_loader(config, data, size, workers, queue=None):
    """The training loader exactly as ``leukonet fit`` builds it (its augmentation policy,
    shuffle and seed), with ``workers`` threads; ``queue``: another max_queue_size."""
    from leukonet.train.loaders import _loaders

    loader = _loaders(config.replace(workers=workers), data, size)[0]
    if queue:
        loader.max_queue_size = queue
    return loader


def _memory_feed_kind():
    import keras

    return ("device arrays (JAX), cycled" if keras.backend.backend() == "jax"
            else "host arrays, cycled (only the JAX backend puts them on the device here)")


def _in_memory(batches, steps):
    """A PyDataset of ``steps`` batches cycling over ``batches``, converted once to the
    backend's tensors (on JAX: arrays on the default device, which Keras' JAX trainer then
    uses without a copy). One worker: served in the main thread, no queue."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        batches = [jax.device_put(b) for b in batches]

    class Cycled(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1)

        def __len__(self):
            return steps

        def __getitem__(self, i):
            return batches[i % len(batches)]

    return Cycled()


# ---- timing -------------------------------------------------------------------------
def _step_clock():
    """A callback noting the time each training step ends. ``async_safe``: Keras then calls
    it from its callback threads once the step's logs are on the host (the step has run),
    and keeps dispatching steps ahead; a plain batch callback would make Keras read the
    logs after every step, which is what is measured separately (NanGuard)."""
    import keras

    class StepClock(keras.callbacks.Callback):
        async_safe = True

        def __init__(self):
            super().__init__()
            self.stamps = {}

        def on_train_batch_end(self, batch, logs=None):
            self.stamps[batch] = time.perf_counter()

    return StepClock()


def _measure(model, feed, warmup, steps, batch, callbacks=()):
    """Training images/s over ``steps`` steps after ``warmup`` (>= 1) untimed ones: one
    ``fit`` of one epoch, timed from the end of the last warm-up step."""
    clock = _step_clock()
    model.fit(feed, epochs=1, steps_per_epoch=warmup + steps, shuffle=False, verbose=0,
              callbacks=[clock, *callbacks])
    first, last = clock.stamps[warmup - 1], clock.stamps[warmup + steps - 1]
    return steps * batch / (last - first)


@contextlib.contextmanager
def _policy(name):
    """Keras' global dtype policy for the block (models built inside keep it)."""
    import keras

    before = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def _compute_dtypes(model):
    """What mixed precision engaged: the backbone's convolutions' compute dtype, the
    output's, and whether the optimizer scales the loss."""
    backbone = model.get_layer("backbone")
    convs = {l.compute_dtype for l in backbone.layers if "Conv" in type(l).__name__}
    return dict(conv_compute_dtypes=sorted(convs), output_dtype=model.layers[-1].compute_dtype,
                loss_scaling=type(model.optimizer).__name__ == "LossScaleOptimizer")


def _timed_row(spec, precision, data, args, deadline):
    """One config in one precision: the feeds of the module docstring, images/s each."""
    import keras

    from leukonet.train.callbacks import NanGuard

    name, backbone, head, size, batch = spec
    row = dict(config=name, backbone=backbone, head=head, size=f"{size[0]}x{size[1]}", batch=batch,
               precision=precision)
    if time.perf_counter() > deadline:
        return {**row, "skipped": "time budget (--minutes) spent; rerun with --configs"}
    needed = args.warmup + args.steps
    if len(data["train"]) // batch < needed:
        return {**row, "skipped": f"{len(data['train'])} training images: fewer than {needed} batches"}
    config, model, built = _build(spec, precision, data, args)
    row.update(built)
    batches = [_train_loader(config, data, size, 1)[i] for i in range(MEMORY_BATCHES)]
    # a first fit of warm-up steps alone: the JIT compile and the other one-off costs of a
    # model's first fit fall there, not in the memory feed's measured fit
    start = time.perf_counter()
    model.fit(_in_memory(batches, args.warmup), epochs=1, shuffle=False, verbose=0)
    row["first_fit_seconds"] = round(time.perf_counter() - start, 1)
    memory = _measure(model, _in_memory(batches, needed), args.warmup, args.steps, batch)
    synced = _measure(model, _in_memory(batches, needed), args.warmup, args.steps, batch,
                      callbacks=[NanGuard()])
    row.update(images_per_s_memory=round(memory, 1), images_per_s_memory_step_sync=round(synced, 1),
               **_loader_sweep(model, config, data, args, memory))
    recipe = spec == _recipe_spec(args)
    if recipe and precision == _train_policy(args):  # sizes the training's epochs
        row["checkpoint_seconds"] = _checkpoint_seconds(model)
    if args.check_no_jit and recipe and precision == "float32":
        _compile_as_leukonet(model, config.replace(jit=False))  # --no-jit
        row["images_per_s_memory_no_jit"] = round(_measure(model, _in_memory(batches, 3), 1, 2, batch), 2)
    del model, batches
    keras.backend.clear_session()
    gc.collect()
    return row


def _build(spec, precision, data, args):
    """(FitConfig, the model compiled as ``leukonet fit`` compiles it, facts for the row)."""
    from leukonet.config import FitConfig
    from leukonet.models.build import build_model

    _, backbone, head, size, batch = spec
    augment = {} if not args.no_augment else dict(rotate=0, flip=False, zoom=0, shift=0, brightness=0,
                                                  contrast=0, hue=0, saturation=0)
    config = FitConfig(backbone=backbone, head=head, weights="none", image_size=list(size),
                       batch_size=batch, jit=True, **augment)
    start = time.perf_counter()
    with _policy(precision):
        model = build_model(config, len(data["classes"]), size)
        _compile_as_leukonet(model, config)
    return config, model, dict(build_seconds=round(time.perf_counter() - start, 1), **_compute_dtypes(model))


def _compile_as_leukonet(model, config):
    from leukonet.train.keras_setup import _compile

    _compile(model, config, config.lr, None)


def _loader_sweep(model, config, data, args, memory):
    """The loader feed for each --workers count, the best, its ratio to the memory feed,
    and the most workers again with a queue of twice as many batches."""
    size, batch = tuple(config.image_size), config.batch_size
    by_workers = {w: _measure(model, _train_loader(config, data, size, w), args.warmup, args.steps, batch)
                  for w in args.workers}
    best, most = max(by_workers, key=by_workers.get), max(args.workers)
    queued = _measure(model, _train_loader(config, data, size, most, queue=2 * most), args.warmup,
                      args.steps, batch)
    return dict(images_per_s_loader_by_workers={str(w): round(v, 1) for w, v in by_workers.items()},
                best_workers=best, images_per_s_loader=round(by_workers[best], 1),
                ratio_loader_memory=round(by_workers[best] / memory, 3),
                images_per_s_loader_queue=dict(workers=most, max_queue_size=2 * most,
                                               images_per_s=round(queued, 1)))


def _recipe_spec(args):
    """The recipe's config: the first one (inception_resnet_v2 240x320 batch 20; --quick:
    simple_cnn), timed or not."""
    return (QUICK_CONFIGS if args.quick else CONFIGS)[0]


def _train_policy(args):
    return LEUKONET_MIXED if args.train_precision == "mixed" else "float32"


def _checkpoint_seconds(model):
    """Seconds to save the model with its optimizer state once (what each epoch's
    checkpoints write), for sizing the training."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model.save(Path(tmp) / "m.keras")
        return round(time.perf_counter() - start, 2)


def _speedups(rows, mixed):
    """Mixed precision / float32 images/s, per config and feed."""
    out = {}
    for name in dict.fromkeys(r["config"] for r in rows):
        by = {r["precision"]: r for r in rows if r["config"] == name and "skipped" not in r}
        if "float32" not in by:
            continue
        for policy in (mixed, LEUKONET_MIXED):
            if policy in by:
                out[f"{name} {policy}"] = {
                    feed: round(by[policy][key] / by["float32"][key], 3)
                    for feed, key in (("memory", "images_per_s_memory"), ("loader", "images_per_s_loader"))}
    return out


# ---- the recipe's training ------------------------------------------------------------
def _train_recipe(args, paths, rows, data, tmp):
    """``leukonet.fit`` of the recipe for the epochs that fit --train-minutes, then TEST."""
    import keras

    import leukonet
    from leukonet.config import FitConfig

    name, backbone, head, size, batch = _recipe_spec(args)
    policy = _train_policy(args)
    rate = next((r for r in rows if r["config"] == name and r["precision"] == policy and "skipped" not in r),
                None)
    if rate is None:  # not timed in this run (--parts train, or the budget): time it now
        rate = _timed_row(_recipe_spec(args), policy, data,
                          argparse.Namespace(**{**vars(args), "workers": [max(args.workers)]}), math.inf)
    if "skipped" in rate:
        from leukonet.errors import LeukonetError

        raise LeukonetError(f"cannot size the training: {rate['skipped']}")
    epochs, estimate = _epochs(args, rate, data)
    config = FitConfig(manifest=str(paths["train"]), val_manifest=str(paths["val"]),
                       data_root=str(paths["root"]), backbone=backbone, head=head, weights="none",
                       image_size=list(size), batch_size=batch, epochs=epochs, workers=rate["best_workers"],
                       jit=True, mixed_precision=policy == LEUKONET_MIXED, run_dir=str(tmp / "run"), overwrite=True)
    print(f"training {name} ({policy}) for {epochs} epoch(s), {rate['best_workers']} workers "
          f"(estimate {estimate['epoch_seconds']} s per epoch)", flush=True)
    start = time.perf_counter()
    result = leukonet.fit(config, verbose=0 if args.quick else 2)
    fit_seconds = time.perf_counter() - start
    # FitConfig(mixed_precision=True) sets Keras' global policy and leaves it set (noted)
    policy_after = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    metrics = result.metrics
    return dict(config=name, precision=policy, epochs=epochs, estimate=estimate, workers=rate["best_workers"],
                fit_seconds=round(fit_seconds, 1), train_seconds=metrics.get("train_seconds"),
                epochs_run=metrics.get("epochs_run"), best_epoch=metrics.get("best_epoch"),
                val_accuracy=metrics.get("val_accuracy"), global_policy_after_fit=policy_after,
                model_dtypes=_compute_dtypes(result.model), **_test_scores(result, paths, tmp))


def _test_scores(result, paths, tmp):
    """TEST accuracy by ``Run.evaluate``, with its 95 % interval over families."""
    start = time.perf_counter()
    ev = result.evaluate(str(paths["test"]), str(paths["root"]), figures=False, out_dir=tmp / "eval")
    return dict(evaluate_seconds=round(time.perf_counter() - start, 1), test_accuracy=ev.metrics["accuracy"],
                test_balanced_accuracy=ev.metrics["balanced_accuracy"], test_images=ev.metrics["images"],
                test_accuracy_ci95_over_families=ev.metrics.get("by_family", {}).get("accuracy_ci95_over_families"),
                published_test_accuracy=PUBLISHED_TEST_ACCURACY,
                published_note="ImageNet-pretrained InceptionResNetV2; this run is from scratch")


def _epochs(args, rate, data):
    """Epochs that fit --train-minutes: the measured loader rate for the training images,
    validation at twice that rate, ~3 checkpoint writes, the first epoch's compile."""
    if args.quick:
        return 1, dict(epoch_seconds=None, note="--quick: one epoch")
    ips = rate["images_per_s_loader"]
    epoch = (len(data["train"]) / ips + len(data["val"]) / (2 * ips)
             + CHECKPOINT_WRITES * rate.get("checkpoint_seconds", 0.0))
    budget = 60 * args.train_minutes - rate["first_fit_seconds"]
    epochs = max(1, min(200, int(budget // epoch)))
    return epochs, dict(epoch_seconds=round(epoch, 1), images_per_s=ips,
                        compile_seconds=rate["first_fit_seconds"],
                        checkpoint_seconds=rate.get("checkpoint_seconds"))


# ---- report -------------------------------------------------------------------------
def _machine():
    import keras
    import numpy as np

    facts = dict(backend=keras.backend.backend(), python=platform.python_version(), keras=keras.__version__,
                 numpy=np.__version__, cpus=os.cpu_count(), cpus_usable=len(os.sched_getaffinity(0)),
                 platform=platform.platform())
    with contextlib.suppress(Exception):  # the distribution API is not on every backend
        facts["devices"] = [str(d) for d in keras.distribution.list_devices()]
    if facts["backend"] == "jax":
        import jax
        import jaxlib

        facts.update(jax=jax.__version__, jaxlib=jaxlib.__version__, jax_default_backend=jax.default_backend(),
                     jax_devices=[f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()])
    elif facts["backend"] == "tensorflow":
        import tensorflow as tf

        facts.update(tensorflow=tf.__version__,
                     tf_devices=[d.name for d in tf.config.list_physical_devices()])
    return facts


def _row_line(r):
    head = f"{r['config']:<26} {r['precision']:<15}"
    if "skipped" in r:
        return f"{head} skipped: {r['skipped']}"
    return (f"{head} {r['images_per_s_memory']:>9.1f} {r['images_per_s_memory_step_sync']:>9.1f} "
            f"{r['images_per_s_loader']:>9.1f} ({r['best_workers']:>2}) {r['ratio_loader_memory']:>6.3f} "
            f"{r['images_per_s_loader_queue']['images_per_s']:>9.1f} {r['first_fit_seconds']:>7.1f}")


def _print_table(result):
    print()
    print(f"{'config':<26} {'precision':<15} {'memory':>9} {'mem+sync':>9} {'loader':>9} {'(w)':>4} "
          f"{'ratio':>6} {'queue 2w':>9} {'1st fit':>7}   (training images/s)")
    for r in result["rows"]:
        print(_row_line(r))
    for key, value in result["mixed_speedup"].items():
        print(f"mixed precision speed-up, {key}: memory {value['memory']}x, loader {value['loader']}x")
    for r in result["rows"]:
        if "images_per_s_memory_no_jit" in r:
            print(f"{r['config']} float32 with --no-jit: "
                  f"{r['images_per_s_memory_no_jit']} images/s, memory feed")
    t = result["training"]
    if t:
        ci = t["test_accuracy_ci95_over_families"]
        ci = f" (95 % over families {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
        print(f"training {t['config']} {t['precision']}: {t['epochs_run']} epoch(s), {t['train_seconds']} s; "
              f"val {t['val_accuracy']:.4f}; TEST {t['test_accuracy']:.4f}{ci} on {t['test_images']} "
              f"images; published {t['published_test_accuracy']} ({t['published_note']})")
    print(f"total {result['total_seconds']} s")


if __name__ == "__main__":
    main()
