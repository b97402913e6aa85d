"""The lab as a student uses it: JupyterLab 4 in headless Chromium, driven by Playwright.

A JupyterLab server runs from this environment on a free port, over a temporary copy of the notebooks
(so autosave never touches the checkout), with temporary settings, workspaces and runtime folders
and the lab's own settings (fpnlab.jupyter_setup). Chromium is the system's (Playwright's own browser
download needs the internet): FPNLAB_CHROMIUM, else /usr/bin/chromium. Without it the tests skip with
one line saying how to enable them; with CI=true a missing browser is a failure.

Screenshots of every notebook go to artifacts/screenshots/ (ignored by git), for CI to keep.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from fpnlab.jupyter_setup import install_lab_settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TOKEN = "fpnlab-browser-tests"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]


def chromium() -> str | None:
    """The Chromium (or Chrome) binary to drive, or None."""
    candidates = [os.environ.get("FPNLAB_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
                  shutil.which("chromium"), shutil.which("google-chrome")]
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


@pytest.fixture(scope="session")
def lab_url(tmp_path_factory: pytest.TempPathFactory, browser: object) -> Iterator[str]:
    """A JupyterLab server over a copy of notebooks/; yields its base URL."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("expected", "runs"))
    settings = install_lab_settings(root / "app")  # the overrides `make lab` installs, in a private folder
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    port = free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root / 'notebooks'}",
               f"--LabApp.app_settings_dir={settings.parent}", "--LabApp.expose_app_in_browser=True",
               "--ServerApp.disable_check_xsrf=True", "--allow-root"]
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, cwd=root / "notebooks", env=env, stdout=log, stderr=subprocess.STDOUT)
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
