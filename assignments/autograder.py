"""The autograder: its folder and the Gradescope zip that `otter generate` makes of it (instructors only).

autograder/tests/<unit>.py        every case, visible and hidden (seeds from the secret); capstone, training, analysis
autograder/files/grade.py         what otter's kernel executes (assignments/grade.py): the grader's, never the student's
autograder/files/autograde/       release/fpnlab (the student release's package, the base of grading),
                                  data/shapes-mini, assignments/ (the grading code)
autograder/otter_config.json, requirements.txt
autograder.zip                    beside the folder: upload it to Gradescope, or grade with
                                  `python -m assignments.runner dist/autograder.zip submission.zip`

otter generate's setup.sh and run_autograder are replaced in the zip: the image gets Python, otter-grader
and CPU-only torch, no LaTeX and no browser; each submission is run by assignments.runner, which moves the
upload out of the folder otter executes before otter starts.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from otter.generate import MINIFORGE_VERSION
from otter.generate import main as otter_generate
from otter.utils import chdir
from otter.version import __version__ as otter_version

from assignments.config import ASSIGNMENTS

OTTER_CONFIG = {  # otter_config.json: what otter's own options can say (assignments/report.py does the rest)
    "lang": "python",
    "show_stdout": False,  # the grading's stdout is never shown to students
    "show_hidden": False,  # otter's full case messages (hidden ones included) stay hidden: assignments.report
    "print_summary": False,
    "logo": False,
}
PYTHON = "3.11"
REQUIREMENTS = """\
# The grading image beside otter-grader (setup.sh installs CPU-only torch and torchvision first).
numpy>=1.24
pillow>=9.0
matplotlib>=3.7
pycocotools>=2.0.7
tqdm>=4.64
"""
SETUP = """\
#!/usr/bin/env bash
# fpnlab's grading image (assignments/autograder.py): Python, otter-grader, CPU-only torch; no LaTeX, no browser.
set -e
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends wget ca-certificates
wget -nv https://github.com/conda-forge/miniforge/releases/download/{miniforge}/Miniforge3-Linux-x86_64.sh \\
    -O /autograder/source/mamba_install.sh
bash /autograder/source/mamba_install.sh -b
export PATH=/root/miniforge3/bin:$PATH
mamba create -y -n otter-env python={python} pip
ENV=/root/miniforge3/envs/otter-env/bin
$ENV/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch>=2.3" "torchvision>=0.18"
$ENV/pip install --no-cache-dir "otter-grader=={otter}" ipykernel jupyter_client -r /autograder/source/requirements.txt
"""
RUN = """\
#!/usr/bin/env bash
# One submission: assignments.runner moves the upload aside, runs otter, writes what students may see.
export PATH=/root/miniforge3/envs/otter-env/bin:/root/miniforge3/bin:$PATH
cd /autograder/source/files/autograde && python -m assignments.runner --gradescope
"""
GRADING_CODE = (  # of assignments/, what grade.py and the runner import in the image
    "__init__.py",
    "config.py",
    "grading.py",
    "report.py",
    "layout.py",
    "runner.py",
    "submission.py",
)


def write_autograder(out: Path, release: Path, tests: dict[str, str]) -> Path:
    """Write the autograder folder into `out` from the student `release` and all `tests`; return it."""
    (out / "tests").mkdir(parents=True)
    for name, source in tests.items():
        (out / "tests" / f"{name}.py").write_text(source, encoding="utf-8")
    files = out / "files"
    files.mkdir()
    shutil.copy2(ASSIGNMENTS / "grade.py", files / "grade.py")
    shutil.copytree(release / "fpnlab", files / "autograde" / "release" / "fpnlab")
    shutil.copytree(release / "data", files / "autograde" / "data")
    (files / "autograde" / "assignments").mkdir()
    for name in GRADING_CODE:
        shutil.copy2(ASSIGNMENTS / name, files / "autograde" / "assignments" / name)
    shutil.copy2(ASSIGNMENTS / "points.toml", files / "autograde" / "assignments" / "points.toml")
    (out / "otter_config.json").write_text(json.dumps(OTTER_CONFIG, indent=2) + "\n", encoding="utf-8")
    (out / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
    return out


def gradescope_zip(autograder: Path, zip_path: Path) -> Path:
    """`otter generate` on the autograder folder, then its setup.sh and run_autograder replaced by ours."""
    folder, target = autograder.resolve(), zip_path.resolve()  # otter generate runs inside files/
    with chdir(folder / "files"):
        otter_generate(
            tests_dir=str(folder / "tests"),
            output_path=str(target),
            config=str(folder / "otter_config.json"),
            requirements=str(folder / "requirements.txt"),
            no_environment=True,
            files=["grade.py", "autograde"],
            python_version=PYTHON,
        )
    replace_members(target, {"setup.sh": setup_script(), "run_autograder": RUN})
    return zip_path


def setup_script() -> str:
    """setup.sh for the image, with otter's own versions of otter-grader and Miniforge."""
    return SETUP.format(miniforge=MINIFORGE_VERSION, python=PYTHON, otter=otter_version)


def replace_members(archive: Path, members: dict[str, str]) -> None:
    """Rewrite `archive` with `members` (name -> text) in place of its own files of those names."""
    with zipfile.ZipFile(archive) as old:
        kept = [(info, old.read(info)) for info in old.infolist() if info.filename not in members]
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as new:
        for info, data in kept:
            new.writestr(info, data)
        for name, text in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable, as otter's own
            new.writestr(info, text)
