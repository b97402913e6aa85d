"""Install a package without replacing what the environment has: only its requirements that are not installed.

On Colab, torch, torchvision, numpy, matplotlib, pycocotools and ipywidgets come with the runtime, at
versions Google tested together (ipywidgets 7.7, which Colab's front end draws). `pip install -e .` would
replace any of them that misses fpnlab's ranges. The notebooks' install cell instead installs fpnlab
without its dependencies, then only the requirements whose package is not installed at all:

    install_keeping("fpnlab", "-e", "fpnlab-repo", extras=["widgets"])
    # pip install --no-deps -e fpnlab-repo, then pip install <what is missing>, e.g. nothing on Colab

    missing_requirements("fpnlab", ["widgets"])   # ['pycocotools>=2.0.7'] where only pycocotools is absent

A package installed at a version outside the range asked for is kept, and one line names it: the
environment's own choice wins, and the line says what to upgrade should something fail. The requirements are
read from the installed package's metadata (pyproject.toml's, once pip has installed it), markers evaluated.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import InvalidVersion

from fpnlab.errors import FpnlabError


def requirements(name: str, extras: Sequence[str] = ()) -> list[Requirement]:
    """The requirements of the installed distribution `name` that apply here: its dependencies and its `extras`."""
    try:
        declared = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        raise FpnlabError(f"{name} is not installed, so its requirements cannot be read; install it first.") from None
    found = []
    for text in declared:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in ("", *extras)):
            requirement.marker = None  # what pip is given: the name, extras and version range only
            found.append(requirement)
    return found


def installed_version(project: str) -> str | None:
    """The installed version of `project`, None when it is not installed."""
    try:
        return metadata.version(project)
    except metadata.PackageNotFoundError:
        return None


def missing_requirements(name: str, extras: Sequence[str] = ()) -> list[str]:
    """The requirements of `name` (and its `extras`) whose package is not installed here, as pip arguments."""
    return [str(r) for r in requirements(name, extras) if installed_version(r.name) is None]


def kept_versions(name: str, extras: Sequence[str] = ()) -> list[str]:
    """Requirements installed at a version outside the range asked for (kept as they are): "pkg 7.7.1, asked >=8"."""
    notes = []
    for requirement in requirements(name, extras):
        version = installed_version(requirement.name)
        try:
            outside = version is not None and not requirement.specifier.contains(version, prereleases=True)
        except InvalidVersion:  # a version pip would not write: nothing to compare
            outside = False
        if outside:
            notes.append(f"{requirement.name} {version}, asked {requirement.specifier}")
    return notes


def pip_install(*args: str) -> None:
    """`python -m pip install -q ARGS` into this interpreter's environment; FpnlabError with pip's last words."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise FpnlabError(f"pip install {' '.join(args)} failed: {' / '.join(said) or 'no message'}.")
    importlib.invalidate_caches()  # what was just installed imports in this process at once


def install_keeping(name: str, *target: str, extras: Sequence[str] = ()) -> list[str]:
    """`pip install --no-deps TARGET` (the package `name`), then only its requirements not installed here.

    Returns the requirements it installed; prints one line for them, or for none, and one per version kept."""
    pip_install("--no-deps", *target)
    missing = missing_requirements(name, extras)
    if missing:
        print(f"installing what {name} needs and this environment lacks: {', '.join(missing)}")
        pip_install(*missing)
    else:
        print(f"{name} installed; every package it needs was already here, and nothing else was installed.")
    for note in kept_versions(name, extras):
        print(f"kept the installed {note}")
    return missing
