"""How much disk the lab's environment takes, and how much of it a CPU-only torch saves.

    python benchmarks/venv_size.py                                   # this environment, by group
    python benchmarks/venv_size.py --cpu-wheel torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl --save

The default `pip install torch` on Linux brings CUDA: the nvidia-* wheels (cuBLAS, cuDNN, NCCL...), triton, and
torch's own CUDA kernels. A CPU-only torch (`--index-url https://download.pytorch.org/whl/cpu`) has none of them.
With `--cpu-wheel` (a CPU torch wheel file, as pip downloads it) the script installs that wheel alone into a
temporary folder and measures it; the CPU-only environment is this one without its CUDA groups and with that
torch in place of this one's. `--save` writes results/venv_size.json.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from fpnlab.results import write_result

CUDA_GROUPS = ("nvidia", "triton", "cuda")  # top-level names of the CUDA-only packages (and their dist-info)


def size(path: Path) -> int:
    """Bytes of the files under `path` (a link is counted once, as a link)."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def group_of(name: str) -> str:
    """The group of a top-level entry of site-packages: a CUDA group, torch, or the rest."""
    lowered = name.lower()
    for group in (*CUDA_GROUPS, "torch"):
        if lowered == group or lowered.startswith((f"{group}_", f"{group}-")):
            return group
    return "other"


def measure_environment() -> dict[str, int]:
    """Bytes of this environment (sys.prefix) and of its site-packages by group."""
    site = Path(sysconfig.get_paths()["purelib"])
    groups: dict[str, int] = {}
    for entry in site.iterdir():
        groups[group_of(entry.name)] = groups.get(group_of(entry.name), 0) + size(entry)
    return {"environment": size(Path(sys.prefix)), "site_packages": sum(groups.values()), **groups}


def measure_wheel(wheel: Path) -> dict[str, int]:
    """The wheel's download size and its size once installed (alone, into a temporary folder)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", folder]
        subprocess.run([*command, str(wheel)], check=True)
        return {"download": wheel.stat().st_size, "installed": size(Path(folder))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-wheel", type=Path, help="a CPU-only torch wheel file to measure")
    parser.add_argument("--save", action="store_true", help="write results/venv_size.json")
    args = parser.parse_args()
    sizes = measure_environment()
    record: dict = {"bytes": sizes, "cuda_groups": list(CUDA_GROUPS)}
    cuda = sum(sizes.get(group, 0) for group in CUDA_GROUPS)
    print(f"{'environment':<16} {sizes['environment'] / 1e9:6.2f} GB   ({sys.prefix})")
    for group in (*CUDA_GROUPS, "torch", "other"):
        print(f"  {group:<14} {sizes.get(group, 0) / 1e9:6.2f} GB")
    if args.cpu_wheel:
        wheel = measure_wheel(args.cpu_wheel)
        cpu_only = sizes["environment"] - cuda - sizes["torch"] + wheel["installed"]
        record.update(cpu_wheel=args.cpu_wheel.name, cpu_torch=wheel, cpu_only_environment=cpu_only)
        download, installed = wheel["download"] / 1e6, wheel["installed"] / 1e9
        print(f"{args.cpu_wheel.name}: {download:.0f} MB download, {installed:.2f} GB installed")
        print(f"{'CPU-only':<16} {cpu_only / 1e9:6.2f} GB   (without {', '.join(CUDA_GROUPS)}; that torch instead)")
    if args.save:
        command = shlex.join(["python", "benchmarks/venv_size.py", *sys.argv[1:]])
        print(f"wrote {write_result('venv_size', record, device='cpu', command=command)}")


if __name__ == "__main__":
    main()
