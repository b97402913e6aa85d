"""What grading one submission costs: wall time, CPU time and the peak memory of the whole process tree.

    python benchmarks/grading_cost.py dist/autograder.zip dist/instructor/solution.zip --save

Runs `python -m assignments.runner` on the submission and samples, every 0.2 s, the resident memory of it
and every process below it (otter's kernel, the units' processes). Resident memory is also summed without
the pages of CUDA libraries (libtorch_cuda, cuDNN, cuBLAS, NCCL, triton...), which the CPU-only wheel of the
grading image does not have: an estimate of the same run with that wheel. `--save` writes
results/grading_cost.json, which assignments/README.md's Gradescope settings come from.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from fpnlab.results import write_result

CUDA_LIBRARY = re.compile(r"cuda|cudnn|cublas|cufft|curand|cusolver|cusparse|nccl|nvrtc|nvjitlink|nvshmem|triton|cupti")


def tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def resident_kb(pid: int) -> tuple[int, int]:
    """(all resident kB, resident kB outside CUDA libraries) of one process, from /proc/<pid>/smaps."""
    total = without_cuda = 0
    mapping = ""
    try:
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                mapping = parts[5] if len(parts) > 5 else ""
            elif line.startswith("Rss:"):
                kb = int(line.split()[1])
                total += kb
                without_cuda += 0 if CUDA_LIBRARY.search(mapping) else kb
    except OSError:
        pass
    return total, without_cuda


def measure(autograder: Path, submission: Path) -> dict[str, float]:
    """Grade once, sampling the process tree's memory; the figures of the run."""
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(
        [sys.executable, "-m", "assignments.runner", str(autograder), str(submission)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = peak_cpu_wheel = 0
    while process.poll() is None:
        samples = [resident_kb(pid) for pid in tree(process.pid)]
        peak = max(peak, sum(s[0] for s in samples))
        peak_cpu_wheel = max(peak_cpu_wheel, sum(s[1] for s in samples))
        time.sleep(0.2)
    output = process.communicate()[0]
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process of the tree, once waited for
    total = re.search(r"Total: ([\d.]+)", output)
    return {
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round(cpu.ru_utime + cpu.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_gb": round(peak / 2**20, 3),
        "peak_rss_without_cuda_libraries_gb": round(peak_cpu_wheel / 2**20, 3),
        "score": float(total.group(1)) if total else float("nan"),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("autograder", type=Path)
    parser.add_argument("submission", type=Path)
    parser.add_argument("--save", action="store_true", help="write results/grading_cost.json")
    args = parser.parse_args()
    figures = measure(args.autograder, args.submission)
    for key, value in figures.items():
        print(f"{key:<36} {value}")
    if args.save:
        print(f"wrote {write_result('grading_cost', figures, device='cpu')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
