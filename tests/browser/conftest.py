"""The lab as a student uses it: JupyterLab 4 in headless Chromium, driven by Playwright.

A JupyterLab server runs from this environment on a free port, over a temporary copy of the notebooks
(so autosave never touches the checkout), with temporary settings, workspaces and runtime folders
and the lab's own settings (fpnlab.teaching.jupyter_setup). Chromium is the system's (Playwright's own browser
download needs the internet): FPNLAB_CHROMIUM, else /usr/bin/chromium. Without it the tests skip with
one line saying how to enable them; with CI=true a missing browser is a failure.

Screenshots of every notebook go to artifacts/screenshots/ (ignored by git), for CI to keep.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from fpnlab.outputs import make_folder, write_atomic
from fpnlab.teaching.jupyter_setup import install_lab_settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TOKEN = "fpnlab-browser-tests"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]


def chromium() -> str | None:
    """The Chromium (or Chrome) binary to drive, or None."""
    candidates = [
        os.environ.get("FPNLAB_CHROMIUM"),
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        shutil.which("chromium"),
        shutil.which("google-chrome"),
    ]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    path = chromium()
    if path is None:
        message = "no Chromium found: install it (apt install chromium) or set FPNLAB_CHROMIUM=/path/to/chromium"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {message}; .ci/run installs it.")
        pytest.skip(f"browser tests skipped: {message}.")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


def render_every_cell(user_settings: Path) -> None:
    """The test user's notebook setting windowingMode = "none": every cell stays in the page.

    JupyterLab 4 renders only the cells near the view and re-creates a widget's view when it scrolls back
    in, so a check that reads a widget far above the last cell could read a view being rebuilt (empty)."""
    tracker = user_settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    make_folder(tracker.parent, "JupyterLab user settings folder")
    write_atomic(tracker, json.dumps({"windowingMode": "none"}), "JupyterLab notebook settings")


@contextmanager
def jupyterlab(root: Path, served: Path) -> Iterator[str]:
    """A JupyterLab server over the folder `served`, its settings and runtime files under `root`; yields its URL."""
    settings = install_lab_settings(root / "app")  # the overrides `make lab` installs, in a private folder
    render_every_cell(root / "settings")
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.token={TOKEN}",
        f"--ServerApp.root_dir={served}",
        f"--LabApp.app_settings_dir={settings.parent}",
        "--LabApp.expose_app_in_browser=True",
        "--ServerApp.disable_check_xsrf=True",
        "--allow-root",
    ]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api/status?token={TOKEN}", server, root / "server.log")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="session")
def lab_url(tmp_path_factory: pytest.TempPathFactory, browser: object) -> Iterator[str]:
    """A JupyterLab server over a copy of notebooks/; yields its base URL."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("expected", "runs"))
    with jupyterlab(root, root / "notebooks") as url:
        yield url


def wait_until_up(status_url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(status_url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


# --- a notebook in the page -------------------------------------------------------------------------------

# What the notebook is doing, read through the JupyterLab application object (expose_app_in_browser).
STATE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  for (const c of cells) for (const o of c.model.outputs.toJSON())
    if (o.output_type === 'error') errors.push(o.ename + ': ' + o.evalue);
  return {status: kernel ? kernel.status : 'none', done: cells.filter(c => c.model.executionCount !== null).length,
          cells: cells.length, errors: errors};
}"""


def shut_down_kernels(url: str) -> None:
    """Ask the server (REST API) to shut down every running kernel."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}", timeout=30) as answer:
        kernels = json.load(answer)
    for kernel in kernels:
        request = urllib.request.Request(f"{url}/api/kernels/{kernel['id']}?token={TOKEN}", method="DELETE")
        urllib.request.urlopen(request, timeout=60).close()


def open_notebook(page: Page, url: str, path: str) -> None:
    """Open `path` (a notebook, relative to the server's root) alone in its own workspace; wait for its kernel."""
    name = Path(path).stem
    page.goto(f"{url}/lab/workspaces/{name}/tree/{path}?reset&token={TOKEN}")  # only this notebook open
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
        "&& window.jupyterapp.shell.currentWidget.sessionContext",
        timeout=120_000,
    )
    page.wait_for_function(f"() => {{ const s = ({STATE_JS})(); return s && s.status === 'idle'; }}", timeout=120_000)


def new_page(browser: Browser) -> Iterator[Page]:
    """A fresh browser page whose console errors are collected in page.console_errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: page.console_errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
