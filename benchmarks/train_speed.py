"""How fast the training loop runs: a table of images/second per preset and CPU thread count.

    python benchmarks/train_speed.py                        # cpu preset, 1 and 2 threads, 20 iterations
    python benchmarks/train_speed.py --presets cpu test --threads 2 --iterations 30
    python benchmarks/train_speed.py --presets gpu --save   # on a GPU; also write results/train_speed.json

Each measurement trains a fresh run (same seed) in a temporary folder with fpnlab.engine.loop.train, logging
every iteration, and reports the median images/s over the iterations after `--warmup`. On a CPU shared
with other jobs, many threads can be slower than one: threads that wait for each other get descheduled.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile

import torch

from fpnlab.engine.loop import train
from fpnlab.engine.presets import get_preset
from fpnlab.env import default_device
from fpnlab.results import write_result


def measure(preset: str, threads: int, iterations: int, warmup: int) -> dict[str, float]:
    """Train `iterations` iterations of `preset` with `threads` CPU threads: median s/iteration and images/s."""
    torch.set_num_threads(threads)
    cfg = get_preset(preset, iterations=iterations, log_every=1, checkpoint_every=iterations, eval_at_end=False)
    with tempfile.TemporaryDirectory() as folder:
        result = train(cfg, folder, progress=False)
    speeds = [row["images_per_s"] for row in result.history[warmup:]]
    images_per_s = statistics.median(speeds)
    return {
        "batch_size": cfg.batch_size,
        "s_per_iteration": cfg.batch_size / images_per_s,
        "images_per_s": images_per_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["cpu"], help="presets to time (default cpu)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="CPU thread counts (default 1 2)")
    parser.add_argument("--iterations", type=int, default=20, help="iterations per measurement (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="first iterations left out of the median")
    parser.add_argument("--save", action="store_true", help="write results/train_speed.json")
    args = parser.parse_args()

    rows = []
    print(f"{'preset':<8} {'threads':>7} {'batch':>5} {'s/iter':>8} {'img/s':>8}   ({default_device()})")
    for preset in args.presets:
        for threads in args.threads:
            row = {"preset": preset, "threads": threads, **measure(preset, threads, args.iterations, args.warmup)}
            rows.append(row)
            print(
                f"{preset:<8} {threads:>7} {row['batch_size']:>5} {row['s_per_iteration']:>8.3f} "
                f"{row['images_per_s']:>8.2f}",
                flush=True,
            )
    if args.save:
        command = shlex.join([sys.executable.split("/")[-1], *sys.argv])
        print(f"wrote {write_result('train_speed', {'rows': rows}, command=command)}")


if __name__ == "__main__":
    main()
