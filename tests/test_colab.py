"""The Colab path, without Colab and without a network.

- The README's Colab section and laptop install state the estimate and the sizes their sources hold.
- The one repository setting (pyproject.toml's [project.urls] Repository) and everything written from it agree:
  the README's Colab links and every notebook's install cell (tools/colab_links.py, `make colab-links`).
- The install cell works: it runs in a kernel where fpnlab is not importable (a Python environment of its own
  that sees the test environment's packages but not its fpnlab), from a /content-like folder, cloning a copy
  of this checkout through a file:// URL; it installs fpnlab alone, and the notebook's next cells import it
  and find the data. After a restart (a new kernel) fpnlab imports from the install, and the cell does nothing.
- The assignment's setup cell finds the release in a Google Drive whose mount is faked.
- The widget tests pass on Colab's ipywidgets 7.7.1 too (installed beside the venv's 8.x by `make test`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest

from assignments import release as assignment
from assignments.config import POINTS, read_points
from assignments.notebook import SETUP
from fpnlab.engine.presets import CARD_SPEED, GPU_PRESET_H100_MINUTES, estimated_minutes
from fpnlab.results import read_result
from tests.notebook_outputs import PatientClient
from tools import colab_links
from tools.colab_links import Setting, install_cell, install_cell_index, read_setting

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "fpnlab-fresh-environment"  # the kernel spec of an environment without fpnlab
WIDGETS_7 = Path(sys.prefix) / "overlays" / "ipywidgets-7.7.1"  # the Makefile's test install puts it there


# --- one repository setting ------------------------------------------------------------------------


def test_readme_links_and_install_cells_agree_with_the_setting():
    setting = read_setting()
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"https://colab\.research\.google\.com/github/\S+?\.ipynb", readme)
    assert sorted(links) == sorted(setting.colab_link(path.name) for path in NOTEBOOKS)  # one link per notebook
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert install_cell_index(notebook, path) == 1, path.name  # right after the title
        assert notebook.cells[1].source == install_cell(setting.url, setting.branch), path.name
        assert f"--branch {setting.branch} {setting.url} " in notebook.cells[1].source


def copy_of_the_checkout(destination: Path, files: list[str]) -> Path:
    for name in files:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)
    return destination


def test_colab_links_rewrites_the_setting_the_links_and_the_install_cells_only(tmp_path, capsys):
    files = ["pyproject.toml", "README.md", *(f"notebooks/{path.name}" for path in NOTEBOOKS)]
    root = copy_of_the_checkout(tmp_path, files)
    assert colab_links.main(["--repo", "someone/fpn-course", "--branch", "fall-2026"], root) == 0
    assert capsys.readouterr().out.startswith("repository https://github.com/someone/fpn-course, branch fall-2026: ")
    fork = read_setting(root / "pyproject.toml")
    assert fork == Setting("someone/fpn-course", "fall-2026")
    readme = (root / "README.md").read_text()
    assert readme.count(fork.colab_link("")) == len(NOTEBOOKS) and "github/fpnlab/fpnlab" not in readme
    for path in NOTEBOOKS:
        before, after = nbformat.read(path, as_version=4), nbformat.read(root / "notebooks" / path.name, as_version=4)
        assert after.cells[1].source.count("--branch fall-2026 https://github.com/someone/fpn-course fpnlab-repo") == 1
        after.cells[1].source = before.cells[1].source  # nothing else changed
        assert nbformat.writes(after) == nbformat.writes(before)
    assert colab_links.main([], root) == 0 and capsys.readouterr().out.endswith(": 0 file(s) rewritten\n")
    setting = read_setting()  # and back: byte for byte what the checkout holds
    assert colab_links.main(["--repo", setting.repo, "--branch", setting.branch], root) == 0
    assert all((root / name).read_bytes() == (ROOT / name).read_bytes() for name in files)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--repo", "fpnlab"], "error: REPO must be a GitHub owner/name such as fpnlab/fpnlab, got 'fpnlab'."),
        (["--branch", "a b"], "error: BRANCH must be a git branch name such as main, got 'a b'."),
    ],
)
def test_colab_links_refuses_a_bad_repo_or_branch_in_one_line(tmp_path, capsys, args, message):
    root = copy_of_the_checkout(tmp_path, ["pyproject.toml", "README.md"])
    assert colab_links.main(args, root) == 2
    assert capsys.readouterr().err == message + "\n"
    assert (root / "pyproject.toml").read_bytes() == (ROOT / "pyproject.toml").read_bytes()  # nothing written


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    return text[start : text.index("\n## ", start)]


def test_the_readme_states_the_colab_estimate_and_the_install_sizes_from_their_sources():
    colab = " ".join(readme_section("Colab").replace("**", "").split())
    assert f"About {estimated_minutes('colab'):.0f} minutes of training on the T4" in colab
    assert f"sized for {GPU_PRESET_H100_MINUTES:.0f} minutes on one H100" in colab and CARD_SPEED["T4"] == 0.1
    assert "an estimate, not yet measured on a T4" in colab
    record = read_result("venv_size")
    sizes, cpu = record["bytes"], record["cpu_torch"]
    cuda = sum(sizes[group] for group in record["cuda_groups"])
    laptop = " ".join(readme_section("A laptop without a GPU").split())
    gb = f"{sizes['environment'] / 1e9:.1f} GB, of which {cuda / 1e9:.1f} GB are CUDA libraries"
    assert gb in laptop and f"{sizes['torch'] / 1e9:.1f} GB torch itself" in laptop
    assert f"{cpu['download'] / 1e6:.0f} MB download and {cpu['installed'] / 1e9:.2f} GB installed" in laptop
    assert f"about {record['cpu_only_environment'] / 1e9:.1f} GB" in laptop
    assert record["cpu_wheel"].startswith("torch-2.13.0+cpu-cp311") and "torch 2.13.0+cpu for Python 3.11" in laptop


# --- a kernel where fpnlab is not importable -------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_kernel(tmp_path_factory):
    """A kernel spec for a Python environment of its own (a venv made in a second): it sees the test environment's
    packages through a .pth file of plain paths, whose own .pth files (among them the editable fpnlab's finder)
    it does not run. So torch, ipykernel... import, fpnlab does not, and pip installs into this environment."""
    folder = tmp_path_factory.mktemp("fresh")
    venv.EnvBuilder(with_pip=False).create(folder / "venv")
    python = folder / "venv" / "bin" / "python"
    own_site = next((folder / "venv" / "lib").glob("python*/site-packages"))
    (own_site / "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    spec = folder / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    return folder / "jupyter", own_site


def run_cells(jupyter: Path, cells: list[str], cwd: Path, **env: str) -> list[str]:
    """Run `cells` in a new kernel of the fresh environment (its spec under `jupyter`/kernels), started in `cwd`;
    the text each cell printed. Offline: pip sees no index."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # no fpnlab from here
    environment.update(
        PIP_CONFIG_FILE=os.devnull,  # this machine's pip settings (indexes, wheel folders) do not apply
        PIP_NO_INDEX="1",
        PIP_NO_BUILD_ISOLATION="0",  # build with the setuptools at hand: isolation would download it
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        IPYTHONDIR=str(cwd.parent / "ipython"),
        FPNLAB_DATA=str(cwd.parent / "cache"),  # a missing shapes-mini would be made here, never in ~/.cache
        **env,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(jupyter))  # where the kernel spec is found
        client = PatientClient(notebook, kernel_name=KERNEL, timeout=180, resources={"metadata": {"path": str(cwd)}})
        client.execute(env=environment)
    return [
        "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream") for cell in notebook.cells
    ]


def published_checkout(tmp_path: Path, branch: str) -> str:
    """This checkout as a repository to clone (its working tree, committed changes or not), as a file:// URL."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    files = [name for name in listed.stdout.split("\0") if name and (ROOT / name).is_file()]
    origin = copy_of_the_checkout(tmp_path / "origin", files)
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "--initial-branch", branch, str(origin)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the lab as published"], check=True)
    return origin.as_uri()


PROBE = """\
import fpnlab.env
print("fpnlab:", fpnlab.env.REPO)
print("images:", train_set.image_dir)"""


def test_the_install_cell_clones_installs_alone_and_the_notebook_runs_on(fresh_kernel, tmp_path):
    jupyter, own_site = fresh_kernel
    setting = read_setting()
    notebook = nbformat.read(ROOT / "notebooks" / "00_welcome_and_data.ipynb", as_version=4)
    url = published_checkout(tmp_path, setting.branch)
    install = notebook.cells[1].source.replace(f" {setting.url} ", f" {url} ")
    assert install != notebook.cells[1].source  # the cell as committed, cloning from the local copy
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    settings, environment, data = (notebook.cells[i].source for i in (3, 5, 7))
    printed = run_cells(jupyter, [install, settings, environment, data, PROBE], content)
    clone = content / "fpnlab-repo"
    assert printed[0] == "fpnlab installed; every package it needs was already here, and nothing else was installed.\n"
    assert printed[3].startswith("200 train images, 120 val images\n")
    assert printed[4] == f"fpnlab: {clone}\nimages: {clone / 'data' / 'shapes-mini' / 'train'}\n"
    installed = {path.name for path in own_site.iterdir()} - {"test-environment.pth", "__pycache__"}
    assert installed == {
        "__editable__.fpnlab-0.1.0.pth",
        "__editable___fpnlab_0_1_0_finder.py",
        "fpnlab-0.1.0.dist-info",
    }
    # a restart: fpnlab now imports from the install (not from the clone's folder), and the cell does nothing
    again = run_cells(jupyter, [install, "import fpnlab.env; print(fpnlab.env.REPO)"], content)
    assert again == ["", f"{clone}\n"]


FAKE_COLAB = {  # the two modules of google.colab that the setup cell uses; the Drive is a folder of the test's
    "__init__.py": "",
    "drive.py": (
        "import os\n"
        "def mount(mountpoint):\n"
        "    os.symlink(os.environ['FAKE_DRIVE'], mountpoint)\n"
        "    print('Mounted at', mountpoint)\n"
    ),
}


def test_the_assignment_setup_finds_the_release_in_the_mounted_drive(fresh_kernel, tmp_path):
    jupyter, _ = fresh_kernel
    drive = tmp_path / "gdrive"
    points = read_points(POINTS)
    release = assignment.write_release(
        drive / "MyDrive" / "fpn-assignment", points, assignment.test_sources(points, "colab-test")
    )
    fakes = tmp_path / "fakes" / "google" / "colab"  # google/ stays a namespace package: it merges with others
    fakes.mkdir(parents=True)
    for name, source in FAKE_COLAB.items():
        (fakes / name).write_text(source)
    content = tmp_path / "content"
    content.mkdir()
    cells = [
        "import google.colab",  # what Colab's kernel does as it starts
        SETUP,
        'check("area")',
        "import fpnlab; print(ROOT); print(fpnlab.__file__)",
    ]
    env = {"PYTHONPATH": str(tmp_path / "fakes"), "FAKE_DRIVE": str(drive)}
    printed = run_cells(jupyter, cells, content, **env)
    assert printed[1] == f"Mounted at {content / 'drive'}\n"
    assert printed[2].startswith("area: 0 of ")  # the release's stub: the student's unit is not written yet
    found = content / "drive" / "MyDrive" / "fpn-assignment"
    assert printed[3] == f"{found}\n{found / 'fpnlab' / '__init__.py'}\n"
    assert (found / "fpnlab").resolve() == (release / "fpnlab").resolve()


# --- Colab's ipywidgets ----------------------------------------------------------------------------


def test_the_widget_tests_pass_on_colabs_ipywidgets_7_7_1():
    if not (WIDGETS_7 / "ipywidgets").is_dir():
        message = f"ipywidgets 7.7.1 is not in {WIDGETS_7}; `make test` installs it there"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {message}.")
        pytest.skip(message)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WIDGETS_7), str(ROOT)])}
    version = subprocess.run(
        [sys.executable, "-c", "import ipywidgets; print(ipywidgets.__version__)"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert version.stdout.strip() == "7.7.1", version.stderr
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_widgets.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"\b\d+ passed\b", run.stdout) and "failed" not in run.stdout
