"""How fast `fpnlab make-data` renders images: a table of images/second per worker count.

    python benchmarks/make_data.py                      # 1,000 images of 512 px with 2 workers
    python benchmarks/make_data.py --workers 1 2 --images 200

The figures are also written to results/make_data.json (fpnlab.results.write_result).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from fpnlab.data import make_dataset
from fpnlab.results import write_result


def measure(images: int, size: int, workers: int) -> dict[str, float]:
    """Generate `images` training images into a temporary folder; seconds, images/s and MB written."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        make_dataset(folder, images, 0, size=size, seed=0, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        megabytes = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20
    return {
        "workers": workers,
        "images": images,
        "size": size,
        "seconds": round(seconds, 2),
        "images_per_second": round(images / seconds, 1),
        "megabytes": round(megabytes, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--no-record", action="store_true", help="do not write results/make_data.json")
    args = parser.parse_args()

    rows = [measure(args.images, args.size, workers) for workers in args.workers]
    print(f"{'workers':>7} {'images':>6} {'size':>5} {'seconds':>8} {'images/s':>9} {'MB':>6}")
    for row in rows:
        print(
            f"{row['workers']:>7} {row['images']:>6} {row['size']:>5} {row['seconds']:>8.2f} "
            f"{row['images_per_second']:>9.1f} {row['megabytes']:>6.1f}"
        )
    if not args.no_record:
        write_result(
            "make_data",
            {"rows": rows},
            device="cpu",
            command=shlex.join(["python", "benchmarks/make_data.py", *sys.argv[1:]]),
        )


if __name__ == "__main__":
    main()
