"""fpnlab.requirements: what an environment lacks is computed from real package metadata, and only that is installed.

The packages here are made up (fpnlabtest-*): a folder of .dist-info directories put on sys.path is an
environment whose contents the test knows exactly.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from fpnlab import requirements
from fpnlab.errors import FpnlabError

LAB = """\
Metadata-Version: 2.1
Name: fpnlabtest-lab
Version: 1.0
Provides-Extra: widgets
Provides-Extra: lab
Requires-Dist: fpnlabtest-torch>=2.3
Requires-Dist: fpnlabtest-numpy>=1.24
Requires-Dist: fpnlabtest-cocotools>=2.0.7
Requires-Dist: fpnlabtest-oldpython; python_version < "3"
Requires-Dist: fpnlabtest-widgets<9,>=7.7; extra == "widgets"
Requires-Dist: fpnlabtest-jupyterlab>=4; extra == "lab"
"""
INSTALLED = {"fpnlabtest-torch": "2.5.1+cu121", "fpnlabtest-numpy": "1.23.5", "fpnlabtest-widgets": "7.7.1"}


def dist_info(folder, name: str, version: str, text: str | None = None) -> None:
    path = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    path.mkdir()
    (path / "METADATA").write_text(text or f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.fixture()
def environment(tmp_path, monkeypatch):
    """An environment holding fpnlabtest-lab and INSTALLED; fpnlabtest-cocotools and -jupyterlab are absent."""
    dist_info(tmp_path, "fpnlabtest-lab", "1.0", LAB)
    for name, version in INSTALLED.items():
        dist_info(tmp_path, name, version)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_missing_means_not_installed_at_all(environment):
    assert requirements.missing_requirements("fpnlabtest-lab") == ["fpnlabtest-cocotools>=2.0.7"]
    assert requirements.missing_requirements("fpnlabtest-lab", ["widgets"]) == ["fpnlabtest-cocotools>=2.0.7"]
    assert requirements.missing_requirements("fpnlabtest-lab", ["widgets", "lab"]) == [
        "fpnlabtest-cocotools>=2.0.7",
        "fpnlabtest-jupyterlab>=4",
    ]


def test_versions_outside_the_range_are_kept_and_named(environment):
    # numpy 1.23.5 < 1.24 and widgets 7.7.1 in [7.7, 9): only numpy is outside; torch's local version +cu121 is fine
    assert requirements.kept_versions("fpnlabtest-lab", ["widgets"]) == ["fpnlabtest-numpy 1.23.5, asked >=1.24"]


def test_requirements_apply_markers_and_drop_them(environment):
    names = [str(r) for r in requirements.requirements("fpnlabtest-lab", ["lab"])]
    assert names == [
        "fpnlabtest-torch>=2.3",
        "fpnlabtest-numpy>=1.24",
        "fpnlabtest-cocotools>=2.0.7",
        "fpnlabtest-jupyterlab>=4",
    ]  # not the python < 3 one, not the widgets extra's


def test_a_package_that_is_not_installed_is_named(environment):
    with pytest.raises(FpnlabError) as err:
        requirements.missing_requirements("fpnlabtest-nowhere")
    assert str(err.value) == (
        "fpnlabtest-nowhere is not installed, so its requirements cannot be read; install it first."
    )


class FakePip:
    """Records the pip commands instead of running them."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.returncode, self.stderr = returncode, stderr

    def __call__(self, command, capture_output, text):
        self.calls.append(command)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


def test_install_keeping_installs_the_package_alone_then_only_what_is_missing(environment, monkeypatch, capsys):
    pip = FakePip()
    monkeypatch.setattr(requirements.subprocess, "run", pip)
    installed = requirements.install_keeping("fpnlabtest-lab", "-e", "fpnlab-repo", extras=["widgets"])
    head = [sys.executable, "-m", "pip", "install", "-q"]
    assert pip.calls == [[*head, "--no-deps", "-e", "fpnlab-repo"], [*head, "fpnlabtest-cocotools>=2.0.7"]]
    assert installed == ["fpnlabtest-cocotools>=2.0.7"]
    assert capsys.readouterr().out.splitlines() == [
        "installing what fpnlabtest-lab needs and this environment lacks: fpnlabtest-cocotools>=2.0.7",
        "kept the installed fpnlabtest-numpy 1.23.5, asked >=1.24",
    ]


def test_install_keeping_with_nothing_missing_runs_pip_once(tmp_path, monkeypatch, capsys):
    dist_info(tmp_path, "fpnlabtest-lab", "1.0", LAB)
    for name in ("fpnlabtest-torch", "fpnlabtest-numpy", "fpnlabtest-cocotools"):
        dist_info(tmp_path, name, "3.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    pip = FakePip()
    monkeypatch.setattr(requirements.subprocess, "run", pip)
    assert requirements.install_keeping("fpnlabtest-lab", "fpnlabtest-lab==1.0") == []
    assert len(pip.calls) == 1 and pip.calls[0][-2:] == ["--no-deps", "fpnlabtest-lab==1.0"]
    assert capsys.readouterr().out == (
        "fpnlabtest-lab installed; every package it needs was already here, and nothing else was installed.\n"
    )


def test_a_failing_pip_is_one_sentence_with_its_last_words(monkeypatch):
    monkeypatch.setattr(requirements.subprocess, "run", FakePip(1, "Collecting x\nERROR: No matching distribution"))
    with pytest.raises(FpnlabError) as err:
        requirements.pip_install("--no-deps", "x>=1")
    assert str(err.value) == "pip install --no-deps x>=1 failed: Collecting x / ERROR: No matching distribution."
