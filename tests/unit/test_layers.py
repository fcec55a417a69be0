"""The layers of DESIGN.md §8, checked where they matter: in a fresh interpreter, after importing every module of
a layer, no module of a layer above it is loaded.

import-linter (pyproject.toml, run by `make lint` and scripts/test) checks the same rules on the source; these
check the running process, where an import made at run time, through a string or a plugin, would show too.

And the rooms of §8 stay of a readable size: no module of `lvsadmin/` over 600 lines, no function over 80
(migrations are generated, not read).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Import every module of the package `name`, then print the loaded modules that start with one of `forbidden`.
PROBE = """
import importlib, pkgutil, sys
package = importlib.import_module({name!r})
for info in pkgutil.walk_packages(getattr(package, "__path__", []), package.__name__ + "."):
    importlib.import_module(info.name)
bad = sorted(m for m in sys.modules if m.startswith({forbidden!r}) and not m.startswith({allowed!r}))
print(bad)
sys.exit(1 if bad else 0)
"""

# kombu's JSON looks for django.utils.functional when Django is installed; nothing else of Django may load:
# no settings, no apps, no ORM, no database driver.
AGENT_FORBIDDEN = ("django.db", "django.conf", "django.apps", "django_celery_beat", "lvsadmin.core",
                   "lvsadmin.settings", "lvsadmin.audit", "lvsadmin.web", "lvsadmin.backups", "psycopg", "sqlite3",
                   "dj_database_url")


def loaded_above(name: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = (),
                 **env) -> subprocess.CompletedProcess:
    code = PROBE.format(name=name, forbidden=forbidden, allowed=allowed)
    env = {"PATH": "/usr/bin:/bin", "LVSADMIN_BALANCER": "x", "LVSADMIN_AGENT_BACKEND": "memory", **env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def agent_keys(tmp_path) -> dict:
    from lvsadmin import signing

    signing.write_private_key(tmp_path / "agent")
    signing.write_private_key(tmp_path / "panel")
    return {"LVSADMIN_AGENT_KEY": str(tmp_path / "agent"), "LVSADMIN_PANEL_PUBLIC_KEY": str(tmp_path / "panel.pub"),
            "LVSADMIN_AGENT_STATE": str(tmp_path / "state.json")}


def test_the_agent_imports_no_django_no_orm_and_nothing_of_the_panel(tmp_path):
    result = loaded_above("lvsadmin.agent", AGENT_FORBIDDEN, **agent_keys(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("missing", ["LVSADMIN_AGENT_KEY", "LVSADMIN_PANEL_PUBLIC_KEY"])
def test_the_agent_refuses_to_start_without_its_key_pair_or_the_panels_key(tmp_path, missing):
    env = agent_keys(tmp_path)
    env[missing] = str(tmp_path / "nothing-here")
    result = loaded_above("lvsadmin.agent", AGENT_FORBIDDEN, **env)
    assert result.returncode == 1 and "lvsadmin agent x refuses to start" in result.stderr
    assert "nothing-here" in result.stderr


@pytest.mark.parametrize(("name", "allowed"), [("lvsadmin.ipvs", ("lvsadmin.ipvs",)),
                                               ("lvsadmin.protocol", ("lvsadmin.protocol", "lvsadmin.ipvs")),
                                               ("lvsadmin.signing", ("lvsadmin.signing",))])
def test_plain_ipvs_and_the_protocol_import_no_django_no_celery_and_nothing_of_the_project_above_them(name, allowed):
    result = loaded_above(name, ("django", "celery", "lvsadmin."), allowed)
    assert result.returncode == 0, result.stdout + result.stderr


MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def project_modules() -> list[Path]:
    return sorted(p for p in (REPO / "lvsadmin").rglob("*.py") if "migrations" not in p.parts)


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(REPO)): n for p in project_modules()
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_80_lines():
    long = {}
    for path in project_modules():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = lines
    assert long == {}


def test_no_two_test_modules_outside_packages_share_a_name():
    # pytest imports the modules of tests/unit, tests/kernel and tests/browser by their bare names (those folders
    # are no packages): two of one name and the second is not collected at all.
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((REPO / "tests").glob("*/test_*.py")):
        if (path.parent / "__init__.py").exists():
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(REPO)} and {path.relative_to(REPO)}")
        seen[path.name] = path
    assert clashes == []
