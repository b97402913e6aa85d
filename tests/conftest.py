"""Fixtures shared by the assignment's test modules (tests/test_assignments.py, tests/test_cheats.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from assignments.config import POINTS
from tests.assignment_support import CAPSTONE_IMAGES, grade

with warnings.catch_warnings():  # otter's imports warn about traitlets' deprecated style, which is not ours
    warnings.filterwarnings("ignore", "Traits should be given as instances", DeprecationWarning)
    from assignments.build import build

SECRET = "a course's secret"  # the tests build with a secret of their own, not the public default


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build for the session, its capstone scored on CAPSTONE_IMAGES val images (points.toml copied)."""
    folder = tmp_path_factory.mktemp("assignment")
    points = POINTS.read_text(encoding="utf-8").replace("val_images = 120", f"val_images = {CAPSTONE_IMAGES}")
    assert f"val_images = {CAPSTONE_IMAGES}" in points
    (folder / "points.toml").write_text(points, encoding="utf-8")
    build(folder / "dist", folder / "points.toml", secret=SECRET)
    return folder / "dist"


@pytest.fixture(scope="session")
def solution_results(dist: Path) -> dict:
    """The whole autograder on the solution's submission zip (the one every instructor uploads first)."""
    return grade(dist, dist / "instructor" / "solution.zip")
