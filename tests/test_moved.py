"""The old flat module names still import for this release, as the same module objects, with a warning."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fpnlab.moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_an_old_name_is_the_module_at_its_new_place(old, new):
    with pytest.warns(DeprecationWarning, match=f"{old} is now {new}"):
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__spec__.name == new  # the module keeps its own identity


def test_what_notebooks_and_users_already_write_still_works_in_a_fresh_interpreter():
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from fpnlab.levels import assign_levels\n"
        "from fpnlab.boxes import box_iou\n"
        "from fpnlab import anchors, units\n"
        "import fpnlab.model.levels\n"
        "assert assign_levels is fpnlab.model.levels.assign_levels and 'iou' in units.UNITS\n"
        "assert anchors.AnchorGenerator is fpnlab.model.anchors.AnchorGenerator\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_new_place_exists_and_no_old_name_is_still_a_file():
    package = Path(importlib.util.find_spec("fpnlab").origin).parent
    for old, new in MOVED.items():
        assert importlib.util.find_spec(new) is not None, new
        assert not (package / f"{old.removeprefix('fpnlab.')}.py").exists(), old
