"""The size of a student's install: this environment's packages, and the same without CUDA's libraries.

    python benchmarks/install_size.py --save      # results/install_size.json

A laptop without a GPU needs no CUDA: STUDENT.md has it install torch's CPU-only wheel. This sums the files
of every installed package (site-packages), then again without the CUDA libraries (the nvidia-* wheels,
triton, and torch's own CUDA libraries: libtorch_cuda, libc10_cuda, cuDNN...): the second is an estimate
of the CPU-only install, whose libtorch_cpu is the same library. The build writes it into the release's
README (assignments/STUDENT.md's {cpu_install_gb}).
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from pathlib import Path

from fpnlab.results import write_result

CUDA = re.compile(
    r"(^|/)(nvidia|triton)(/|$)|cuda|cudnn|cublas|cufft|curand|cusolver|cusparse|nccl|nvrtc|cupti|nvjitlink"
)


def sizes(site: Path) -> tuple[int, int]:
    """(bytes of every file under `site`, bytes of those that are not CUDA's)."""
    total = without = 0
    for path in site.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size = path.stat().st_size
            total += size
            without += 0 if CUDA.search(path.relative_to(site).as_posix()) else size
    return total, without


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", action="store_true", help="write results/install_size.json")
    args = parser.parse_args()
    site = Path(sysconfig.get_paths()["purelib"])
    total, without = sizes(site)
    figures = {
        "site_packages": str(site),
        "installed_gb": round(total / 1e9, 2),
        "cpu_install_gb": round(without / 1e9, 2),
        "cuda_libraries_gb": round((total - without) / 1e9, 2),
    }
    for key, value in figures.items():
        print(f"{key:<20} {value}")
    if args.save:
        print(f"wrote {write_result('install_size', figures, device='cpu')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
