"""What the build reads: the points file an instructor edits, and the paths of the lab and of a release.

points.toml holds every number of the grading: points per unit, the capstone's points, AP50 threshold and
val images, and the points of the hand-graded analysis. It is checked against fpnlab.grading.UNITS, so a
unit added to the lab without points (or points for a unit that is gone) stops the build with one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from fpnlab.errors import FpnlabError
from fpnlab.grading import UNITS

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENTS = REPO / "assignments"
POINTS = ASSIGNMENTS / "points.toml"
UNIT_TESTS = ASSIGNMENTS / "tests"  # one otter test file per unit, visible and hidden cases together
NOTEBOOK = "notebooks/fpn_assignment.ipynb"  # relative to a release (and to a submission)
CAPSTONE_MODEL = "runs/capstone/model.pt"  # the capstone's exported detector, relative to a release
STAGE_MODULES = tuple(sorted({unit.module for unit in UNITS.values()}))  # the files under fpnlab/ with units
SUBMITTED = tuple(f"fpnlab/{module}" for module in STAGE_MODULES) + (NOTEBOOK, CAPSTONE_MODEL)


@dataclass(frozen=True)
class Capstone:
    """The capstone's grading: its points, the AP50 to reach and on how many val images."""

    points: float
    ap50: float
    val_images: int


@dataclass(frozen=True)
class Training:
    """The capstone's training part: its points, and the run's length (must match the stored reference)."""

    points: float
    iterations: int
    images: int


@dataclass(frozen=True)
class Points:
    """Everything points.toml says."""

    units: dict[str, float]  # unit -> points, in fpnlab.grading.UNITS order
    capstone: Capstone
    training: Training
    analysis: float  # hand-graded

    @property
    def autograded(self) -> float:
        """What the autograder can give: every unit and the capstone's two parts."""
        return sum(self.units.values()) + self.capstone.points + self.training.points


def read_points(path: Path = POINTS) -> Points:
    """points.toml, checked: every unit has points and no unknown unit does; every number is in range."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise FpnlabError(f"cannot read the points file {path}: {err}.") from None
    units = _section(data, "units", path)
    missing, unknown = [u for u in UNITS if u not in units], [u for u in units if u not in UNITS]
    if missing or unknown:
        raise FpnlabError(
            f"{path}: [units] must give points to exactly the units of fpnlab.grading.UNITS; "
            f"missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}."
        )
    capstone, manual = _section(data, "capstone", path), _section(data, "manual", path)
    training = _section(data, "training", path)
    numbers = {f"units.{u}": units[u] for u in UNITS} | {
        "capstone.points": capstone.get("points"),
        "training.points": training.get("points"),
        "manual.analysis": manual.get("analysis"),
    }
    for name, value in numbers.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise FpnlabError(f"{path}: {name} must be a number of points >= 0, got {value!r}.")
    ap50, images = capstone.get("ap50"), capstone.get("val_images")
    if not isinstance(ap50, (int, float)) or not 0 <= ap50 <= 1:
        raise FpnlabError(f"{path}: capstone.ap50 must be an AP50 between 0 and 1, got {ap50!r}.")
    for name, value in {
        "capstone.val_images": images,
        "training.iterations": training.get("iterations"),
        "training.images": training.get("images"),
    }.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FpnlabError(f"{path}: {name} must be a whole number >= 1, got {value!r}.")
    return Points(
        {u: units[u] for u in UNITS},
        Capstone(capstone["points"], ap50, images),
        Training(training["points"], training["iterations"], training["images"]),
        manual["analysis"],
    )


def _section(data: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    """The table [name] of the points file, or FpnlabError naming the file and the table."""
    section = data.get(name)
    if not isinstance(section, dict):
        raise FpnlabError(f"{path} has no [{name}] section.")
    return section
