"""The one repository setting, and what is written from it: `make colab-links REPO=owner/name [BRANCH=main]`.

pyproject.toml's `[project.urls]` line `Repository = "https://github.com/OWNER/NAME/tree/BRANCH"` is the one place
that says where the lab is published. From it this tool writes

    README.md           every "open in Colab" link:
                        https://colab.research.google.com/github/OWNER/NAME/blob/BRANCH/notebooks/<notebook>
    notebooks/*.ipynb   each notebook's install cell (its first code cell): clone BRANCH of
                        https://github.com/OWNER/NAME into fpnlab-repo/, install fpnlab from there without
                        replacing what the environment has (fpnlab.requirements)

and changes nothing else (nbformat.write keeps the notebooks' format; a file that already agrees is not rewritten).
The graded assignment's setup cell (assignments/notebook.py) has no repository in it: students get the release
in their Drive, never a clone of the lab with its solutions. tests/test_colab.py checks that all agree.

    python tools/colab_links.py --repo someone/fpn-course --branch fall-2026
    python tools/colab_links.py                 # rewrite from the setting as it is
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from fpnlab.errors import FpnlabError

ROOT = Path(__file__).resolve().parent.parent
INSTALL_MARK = "# Colab or a fresh environment"  # how every install cell starts
CLONE = "fpnlab-repo"  # the clone's folder: not a valid module name, so it can never pass for the fpnlab package
SETTING_LINE = re.compile(
    r'^Repository = "https://github\.com/(?P<repo>[^/"\s]+/[^/"\s]+)/tree/(?P<branch>[^"\s]+)"$', re.M
)
COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/\S+?/notebooks/")
REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
BRANCH_NAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]*$")

INSTALL_CELL = """\
# Colab or a fresh environment: fetch fpnlab (code and data/) and install it, only when it is missing.
# What is installed already stays (on Colab: its torch, numpy, matplotlib, ipywidgets); pip adds only what is missing.
try:
    import fpnlab
except ImportError:
    !test -d {clone} || git clone -q --depth 1 --branch {branch} {url} {clone}
    import os, sys; sys.path.insert(0, os.path.abspath("{clone}"))
    from fpnlab.requirements import install_keeping
    install_keeping("fpnlab", "-e", "{clone}", extras=["widgets"])
    import fpnlab"""


@dataclass(frozen=True)
class Setting:
    """Where the lab is published: a GitHub repository ("owner/name") and its branch."""

    repo: str
    branch: str

    def __post_init__(self) -> None:
        if not REPO_NAME.match(self.repo):
            raise FpnlabError(f"REPO must be a GitHub owner/name such as fpnlab/fpnlab, got {self.repo!r}.")
        if not BRANCH_NAME.match(self.branch) or ".." in self.branch:
            raise FpnlabError(f"BRANCH must be a git branch name such as main, got {self.branch!r}.")

    @property
    def url(self) -> str:
        """What the install cell clones."""
        return f"https://github.com/{self.repo}"

    def line(self) -> str:
        """The setting's line in pyproject.toml."""
        return f'Repository = "{self.url}/tree/{self.branch}"'

    def colab_link(self, notebook: str) -> str:
        """The link that opens notebooks/<notebook> in Colab."""
        return f"https://colab.research.google.com/github/{self.repo}/blob/{self.branch}/notebooks/{notebook}"


def read_setting(pyproject: Path = ROOT / "pyproject.toml") -> Setting:
    """The setting as pyproject.toml states it."""
    found = SETTING_LINE.search(pyproject.read_text(encoding="utf-8"))
    if found is None:
        raise FpnlabError(
            f'{pyproject} has no [project.urls] line Repository = "https://github.com/OWNER/NAME/tree/BRANCH".'
        )
    return Setting(found["repo"], found["branch"])


def install_cell(url: str, branch: str) -> str:
    """A notebook's install cell, cloning `branch` of the repository at `url`."""
    return INSTALL_CELL.format(url=url, branch=branch, clone=CLONE)


def install_cell_index(notebook: nbformat.NotebookNode, path: Path) -> int:
    """The index of the notebook's first code cell, which must be its install cell."""
    index = next((i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"), None)
    if index is None or not notebook.cells[index].source.startswith(INSTALL_MARK):
        raise FpnlabError(f"{path}: the first code cell must be the install cell, starting {INSTALL_MARK!r}.")
    return index


def readme_links(text: str, setting: Setting) -> str:
    """The README with every Colab link pointing at the setting's repository and branch."""
    return COLAB_LINK.sub(lambda _: setting.colab_link(""), text)


def write_if_changed(path: Path, text: str) -> bool:
    if path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def rewrite(setting: Setting, root: Path = ROOT) -> list[Path]:
    """Write the setting into pyproject.toml, the README's links and the notebooks' install cells; the changed files."""
    pyproject = root / "pyproject.toml"
    read_setting(pyproject)  # it must be there to be replaced
    text = SETTING_LINE.sub(lambda _: setting.line(), pyproject.read_text(encoding="utf-8"))
    changed = [pyproject] if write_if_changed(pyproject, text) else []
    readme = root / "README.md"
    if write_if_changed(readme, readme_links(readme.read_text(encoding="utf-8"), setting)):
        changed.append(readme)
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        cell = notebook.cells[install_cell_index(notebook, path)]
        if cell.source != install_cell(setting.url, setting.branch):
            cell.source = install_cell(setting.url, setting.branch)
            nbformat.write(notebook, path)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    """The command line: set the repository (or keep it), rewrite what follows from it; exit 2 with one line on a
    problem."""
    parser = argparse.ArgumentParser(prog="tools/colab_links.py", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", help="GitHub owner/name where the lab is published (default: the setting's)")
    parser.add_argument("--branch", help="its branch (default: main with --repo, else the setting's)")
    args = parser.parse_args(argv)
    try:
        current = read_setting(root / "pyproject.toml")
        setting = Setting(args.repo or current.repo, args.branch or ("main" if args.repo else current.branch))
        changed = rewrite(setting, root)
    except FpnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"repository {setting.url}, branch {setting.branch}: {len(changed)} file(s) rewritten")
    for path in changed:
        print(f"  {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
