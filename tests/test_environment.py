"""environment.yml (conda) must name exactly the dependencies that pyproject.toml declares."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import pytest

    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs |= set(extra)
    return {_normalise(r) for r in reqs}


def _environment_pip_requirements() -> tuple[str, set[str]]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("name:"))
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    pip_items = [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]
    return name, {_normalise(item) for item in pip_items if not item.startswith("-e")}


def test_environment_names_the_pyproject_dependencies():
    name, env_reqs = _environment_pip_requirements()
    assert name == "fpnlab"
    assert env_reqs == _pyproject_requirements()


def test_environment_installs_the_package_with_its_extras():
    text = (ROOT / "environment.yml").read_text()
    assert "- -e .[lab,test]" in text
    assert re.search(r"^\s+- python>=3\.10$", text, re.M)
