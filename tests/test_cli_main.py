"""The `fpnlab` dispatcher: help lists every command, unknown commands fail with exit code 2."""

from __future__ import annotations

import subprocess
import sys

from fpnlab.cli import COMMANDS


def test_console_help_names_all_commands():
    result = subprocess.run([sys.executable, "-m", "fpnlab", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_unknown_command_is_one_clear_error():
    result = subprocess.run([sys.executable, "-m", "fpnlab", "trian"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "invalid choice: 'trian'" in result.stderr
