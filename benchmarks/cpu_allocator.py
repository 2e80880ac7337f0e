"""Benchmark: training step time with TensorFlow's default CPU allocator and with its BFC
(pooling) allocator, which ``import leukonet`` turns on (TF_CPU_ALLOCATOR_USE_BFC).

    python benchmarks/cpu_allocator.py [--quick] [--steps 20] [--repeats 3]

The allocator is chosen when TensorFlow first allocates, so each side runs in a child
process of this script (the same code, alternating sides, --repeats times; median). Each
child: the blood-cells CPU preset's model (simple_cnn_wide + gap head, 96x96, batch 64)
trained for --steps steps on random in-memory arrays after a warm-up, timed with the
process's user/system CPU time and minor page faults. Writes
benchmarks/results/cpu_allocator.json.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(steps, size, batch):
    import keras
    import numpy as np

    from leukonet.models.build import build_model
    from leukonet.presets import preset_config

    model = build_model(preset_config("blood-cells-cpu"), 4, [size, size])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch * steps, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, batch * steps), 4)
    model.fit(x[:2 * batch], y[:2 * batch], batch_size=batch, epochs=1, verbose=0)  # warm-up
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
    print(json.dumps(dict(wall_s=wall, user_s=r1.ru_utime - r0.ru_utime,
                          system_s=r1.ru_stime - r0.ru_stime,
                          minor_faults=r1.ru_minflt - r0.ru_minflt)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 steps, 1 repeat: checks it runs")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--child", choices=["default", "bfc"], help=argparse.SUPPRESS)
    args = p.parse_args()
    steps, repeats = (3, 1) if args.quick else (args.steps, args.repeats)
    if args.child:
        return child(steps, args.size, args.batch)
    runs = {"default": [], "bfc": []}
    for _ in range(repeats):
        for side in runs:
            env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true" if side == "bfc" else "false",
                       TF_CPP_MIN_LOG_LEVEL="2")
            out = subprocess.run([sys.executable, __file__, "--child", side, "--size", str(args.size),
                                  "--batch", str(args.batch)] + (["--quick"] if args.quick else
                                                                 ["--steps", str(steps)]),
                                 env=env, capture_output=True, text=True, check=True)
            runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = []
    for side, results in runs.items():
        row = {k: statistics.median(r[k] for r in results) for k in results[0]}
        row = dict(allocator=side, steps=steps, batch=args.batch, size=args.size,
                   ms_per_step=round(1000 * row["wall_s"] / steps, 1),
                   user_s=round(row["user_s"], 1), system_s=round(row["system_s"], 1),
                   minor_faults_per_step=int(row["minor_faults"] / steps))
        rows.append(row)
        print(f"{side:8} {row['ms_per_step']:8.1f} ms/step  user {row['user_s']:6.1f} s  "
              f"system {row['system_s']:6.1f} s  {row['minor_faults_per_step']:8d} page faults/step")
    speedup = rows[0]["ms_per_step"] / rows[1]["ms_per_step"]
    print(f"BFC allocator: {speedup:.2f}x faster per step")
    if not args.quick:
        from leukonet import io

        io.write_json(HERE / "results" / "cpu_allocator.json", dict(
            machine=f"{os.cpu_count()} CPUs", repeats=repeats, rows=rows,
            speedup=round(speedup, 2), date=time.strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
