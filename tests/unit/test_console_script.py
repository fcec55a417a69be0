"""The `lvsadmin` command is installed (scripts/setup installs the project into the virtualenv, pyproject's
[project.scripts]) and runs from anywhere, not only from a checkout's bin/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_installed_lvsadmin_command_prints_its_usage_from_any_directory(tmp_path):
    command = Path(sys.executable).parent / "lvsadmin"
    assert command.is_file(), f"{command} is missing: scripts/setup installs it (pip install -e .)"
    result = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("`lvsadmin --cluster NAME")
    assert "lvsadmin --cluster web -Ln" in result.stdout
