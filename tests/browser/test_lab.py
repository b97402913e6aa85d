"""Every notebook, Run All in JupyterLab in Chromium; every widget, moved by keyboard and mouse.

One test per notebook (each runs its notebook once):

For each notebook: no error output, no "Error displaying widget", no browser console error, and a
screenshot. For each widget: each kind of control is changed and what the student then reads must be
the value worked out here independently (the stride 2^k, the anchor size and grid cell, Eq. 1's level).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from fpnlab.teaching import widgets
from tests.browser.conftest import ROOT, SCREENSHOTS, STATE_JS, new_page, open_notebook, shut_down_kernels

NOTEBOOKS = sorted(path.stem for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))  # every one of them
WIDGET_CHECKS: dict[str, Callable[[Page], None]] = {}  # notebook -> the check of its widgets (@widget_check)
CHECKED_WIDGETS: set[type] = set()  # the widget classes some check moves


def widget_check(notebook: str, *widgets: type) -> Callable[[Callable[[Page], None]], Callable[[Page], None]]:
    """Register the function below as the browser check of `notebook`'s widgets, instances of `widgets`."""

    def register(check: Callable[[Page], None]) -> Callable[[Page], None]:
        assert notebook in NOTEBOOKS, f"@widget_check({notebook!r}): no notebooks/{notebook}.ipynb"
        WIDGET_CHECKS[notebook] = check
        CHECKED_WIDGETS.update(widgets)
        return check

    return register


RUN_TIMEOUT_S = 600


def run_all(page: Page) -> dict:
    """Run All, then wait until every code cell has run (or one failed) and the kernel is idle."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = page.evaluate(STATE_JS)
        if state["errors"] or (state["done"] == state["cells"] and state["status"] == "idle"):
            return state
        time.sleep(1)
    pytest.fail(f"Run All did not finish within {RUN_TIMEOUT_S} s: {page.evaluate(STATE_JS)}")


@pytest.fixture()
def page(browser, lab_url):
    """A fresh page; afterwards every kernel is shut down, so one notebook's kernel never slows the next one's."""
    yield from new_page(browser)
    shut_down_kernels(lab_url)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_the_browser_and_its_widgets_answer(page, lab_url, name):
    """Run All: no error output, no broken widget, no news pop-up, no console error; then move the widgets."""
    open_notebook(page, lab_url, f"{name}.ipynb")
    state = run_all(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)
    assert state["errors"] == [] and state["done"] == state["cells"]
    assert page.get_by_text("Error displaying widget").count() == 0
    assert page.get_by_text("Would you like to get notified about official Jupyter news?").count() == 0
    if name in WIDGET_CHECKS:
        WIDGET_CHECKS[name](page)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-widgets.png"), full_page=False)
    assert page.console_errors == []


# --- the widgets, one notebook each ------------------------------------------------------------------------


def expect_text(page: Page, pattern: str) -> None:
    expect(page.locator(".widget-html pre").last).to_contain_text(re.compile(pattern), timeout=60_000)


def slider(page: Page, description: str):
    """The slider widget whose label reads `description`."""
    return page.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=description)).last


def press(page: Page, description: str, key: str) -> None:
    """Focus the slider's handle and press `key` (End, Home, ArrowRight, ...), as a keyboard user would."""
    slider(page, description).locator(".noUi-handle").focus()
    page.keyboard.press(key)


def type_value(page: Page, description: str, value: str) -> None:
    """Type a value into the slider's readout, as a student correcting a number would."""
    readout = slider(page, description).locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)
    page.keyboard.press("Enter")


@widget_check("01_bottom_up_pathway", widgets.FeatureMapBrowser)
def feature_browser_of_01(page: Page) -> None:
    """Level toggles and the channel slider: the stride 2^k and the channel asked for."""
    for stage, k, channels in (("C4", 4, 128), ("C2", 2, 32)):  # ResNet-tiny: widths 32, 64, 128, 256
        page.locator(".widget-toggle-buttons button", has_text=stage).last.click()
        expect_text(page, rf"{stage}: {channels} channels x \d+ x \d+, stride {2**k};")
    press(page, "channel", "End")  # the largest channel index any level has (C5: 255), clamped to C2's 31
    expect_text(page, r"showing channel 31 of 32")


@widget_check("02_top_down_and_lateral", widgets.FeatureMapBrowser)
def feature_browser_of_02(page: Page) -> None:
    """Every P level (and a C level) with its own grid and stride."""
    for level, k in (("P3", 3), ("P5", 5), ("C3", 3)):
        page.locator(".widget-toggle-buttons button", has_text=level).last.click()
        expect_text(page, rf"{level}: \d+ channels x {320 // 2**k} x {320 // 2**k}, stride {2**k};")


@widget_check("03_anchors", widgets.AnchorExplorer)
def anchor_explorer_of_03(page: Page) -> None:
    """Level toggle, x/y sliders by keyboard, the ratio slider: grid counts, the cell, the anchor's size."""
    page.locator(".widget-toggle-buttons button", has_text="P5").last.click()
    cells = 320 // 32
    expect_text(page, rf"P5: stride 32, {cells * cells} locations x 3 anchors = {cells * cells * 3} anchors")
    press(page, "x", "End")  # x = 319: the last column of the stride-32 grid
    press(page, "y", "Home")  # y = 0
    expect_text(page, rf"location \(row 0, col {319 // 32}\) = pixel \({319 // 32 * 32}, 0\)")
    press(page, "h/w", "End")  # aspect ratio 2: twice as high as wide, same area as a 256 x 256 square
    half_w, half_h = round(256 / math.sqrt(2) / 2), round(256 * math.sqrt(2) / 2)  # corners in whole pixels
    expect_text(page, rf"aspect ratio h/w = 2: anchor {2 * half_w} x {2 * half_h} px")


def eq1_level(width: float, height: float, canonical: float, k0: int = 4) -> int:
    """FPN Eq. 1, floored and clamped to P2..P5, written out here."""
    return min(max(math.floor(k0 + math.log2(math.sqrt(width * height) / canonical) + 1e-9), 2), 5)


@widget_check("05_roi_level_assignment", widgets.LevelAssignmentExplorer)
def level_explorer_of_05(page: Page) -> None:
    """Width/height by keyboard and by typing, the canonical size, the comparison dropdown: Eq. 1's level."""
    readout = slider(page, "canonical size").locator(".widget-readout")
    readout.scroll_into_view_if_needed()
    expect(readout).to_have_text(re.compile(r"^\s*\d+(\.\d+)?\s*$"), timeout=60_000)
    canonical = float(readout.text_content())
    assert canonical == pytest.approx(224 * 320 / 800)  # the detector's own, at its 320 px input
    dropdown = page.locator(".widget-dropdown select").last
    selected = dropdown.evaluate("s => s.options[s.selectedIndex].text").replace("\xa0", " ")  # widgets use nbsp
    assert selected == "farthest level"  # not blank
    for key, side in (("Home", 4.0), ("End", 640.0)):  # the sliders' ends: 4 px and twice the image side
        press(page, "ROI width", key)
        press(page, "ROI height", key)
        expect_text(
            page, rf"-> level {eq1_level(side, side, canonical)}: pooled from P{eq1_level(side, side, canonical)}"
        )
    type_value(page, "ROI width", "128")
    type_value(page, "ROI height", "128")
    level = eq1_level(128, 128, canonical)
    expect_text(page, rf"ROI 128 x 128 px.*\n.*\n.*-> level {level}: pooled from P{level}")
    dropdown.select_option(label="P2")
    expect_text(page, r"on P2 \d+\.\d x \d+\.\d")


@widget_check("09_masks_from_the_pyramid", widgets.MaskResolutionExplorer)
def mask_round_trip_of_09(page: Page) -> None:
    """The object slider's end (the largest of shapes-mini val's 802 objects), the resolution dropdown, the sampling
    checkbox: the text names the object and M, and a large object keeps IoU >= 0.95 at 28 x 28 (tests/test_masks.py
    measures 0.985 on average for large objects)."""
    press(page, "object (smallest first)", "End")
    expect_text(page, r"object 801: a \w+ \(large in COCO's buckets\)")
    expect_text(page, r"28 x 28 crop -> pasted back: IoU 0\.9[5-9]\d")
    page.locator(".widget-dropdown select").last.select_option(label="7")
    expect_text(page, r"7 x 7 crop -> pasted back: IoU 0\.\d{3}")
    page.locator(".widget-checkbox input").last.check()
    expect_text(page, r"\(aligned sampling\)")


def widget_classes() -> set[type]:
    """Every explorer the package offers: a class of fpnlab.teaching.widgets with a widget() method."""
    return {value for value in vars(widgets).values() if isinstance(value, type) and hasattr(value, "widget")}


def test_every_widget_has_a_browser_check_and_every_notebook_showing_one_is_checked():
    assert widget_classes() <= CHECKED_WIDGETS
    showing = {name for name in NOTEBOOKS if ".widget(" in (ROOT / "notebooks" / f"{name}.ipynb").read_text()}
    assert showing <= set(WIDGET_CHECKS)
