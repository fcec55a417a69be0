"""Kernel tier: tests that need a real IPVS kernel, run in the QEMU guest of scripts/ipvs-vm.

Every test under tests/kernel is marked `kernel` (select or skip the tier with `-m kernel` / `-m "not kernel"`).

The session-scoped fixture `ipvs_guest` boots one guest per test session and shuts it down at the end; tests
drive it with `ipvs_guest.run(...)` (a command, as root, in the guest) and `ipvs_guest.python(code)` (a snippet
run by this very interpreter, the project's virtualenv, with the repository as cwd).  The guest shares the
host's filesystem read-only and keeps its own writes in RAM, so results come back on stdout.  A guest process
reaches a service on the host's 127.0.0.1:PORT at `ipvs_guest.host_addr`:PORT.

When pytest itself already runs inside the guest (`scripts/ipvs-vm run -- pytest tests/kernel`, where
LVSADMIN_IN_GUEST=1), the fixture runs the commands directly instead of booting another guest.

Without QEMU or the Debian kernel the tests are skipped, naming the packages to install.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HOST_FROM_GUEST = "10.0.2.2"  # qemu user networking: the host's loopback, seen from the guest


def pytest_configure(config):
    config.addinivalue_line("markers", "kernel: runs against a real IPVS kernel in the VM (scripts/ipvs-vm)")


def pytest_collection_modifyitems(config, items):
    # This hook sees the whole session's items: mark only ours.
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.kernel)


def load_ipvs_vm():
    """scripts/ipvs-vm as a module (it has no .py suffix, so through an explicit loader)."""
    loader = importlib.machinery.SourceFileLoader("ipvs_vm", str(REPO / "scripts" / "ipvs-vm"))
    spec = importlib.util.spec_from_loader("ipvs_vm", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class GuestCommandError(subprocess.CalledProcessError):
    """A command in the guest failed; unlike CalledProcessError, the message shows its output."""

    def __str__(self):
        return (
            f"in the guest: {self.cmd!r} exited with {self.returncode}\n"
            f"--- stdout (tail) ---\n{(self.stdout or '')[-4000:]}\n"
            f"--- stderr (tail) ---\n{(self.stderr or '')[-4000:]}"
        )


class IpvsGuest:
    """Runs commands in the IPVS guest (or, already inside it, right here)."""

    host_addr = HOST_FROM_GUEST

    def __init__(self, guest=None, env=None):
        self._guest = guest  # an ipvs-vm Guest, or None when we already run inside the guest
        self._env = env or {}

    @property
    def in_guest(self) -> bool:
        """True when this pytest runs inside the guest itself (there is no separate host side)."""
        return self._guest is None

    def run(
        self,
        cmd: str | list[str],
        check: bool = True,
        timeout: float | None = 300,
        input: str | bytes | None = None,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `cmd` as root in the guest: a string goes to `sh -c`, a list is the argv.

        Returns a CompletedProcess with text stdout/stderr.  `check` raises GuestCommandError on a non-zero
        exit; `timeout` (seconds) kills the command in the guest and raises subprocess.TimeoutExpired.
        """
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        full_env = {**self._env, **(env or {})}
        cwd = str(cwd or os.getcwd())
        if self._guest is None:
            rc, out, err, timed_out = _run_here(argv, cwd, {**os.environ, **full_env}, input, timeout)
        else:
            rc, out, err, timed_out = self._guest.exec(argv, cwd=cwd, env=full_env, input=input, timeout=timeout)
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        if timed_out:
            raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err)
        if check and rc != 0:
            raise GuestCommandError(rc, cmd, out, err)
        return subprocess.CompletedProcess(cmd, rc, out, err)

    def python(self, code: str, **kwargs) -> subprocess.CompletedProcess:
        """Run a Python snippet in the guest with this interpreter (the project's venv), cwd = the repository."""
        kwargs.setdefault("cwd", REPO)
        return self.run([sys.executable, "-c", code], **kwargs)


def _run_here(argv, cwd, env, input, timeout):
    """Like Guest.exec, in this machine: a timeout kills the command's whole process group."""
    with subprocess.Popen(
        argv, cwd=cwd, env=env, start_new_session=True,
        stdin=subprocess.DEVNULL if input is None else subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        try:
            out, err = proc.communicate(input.encode() if isinstance(input, str) else input, timeout=timeout)
            return proc.returncode, out, err, False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return proc.returncode, out, err, True


@pytest.fixture(scope="session")
def ipvs_guest():
    """One IPVS guest for the test session (see the module docstring)."""
    if os.environ.get("LVSADMIN_IN_GUEST") == "1":
        yield IpvsGuest()
        return
    ipvs_vm = load_ipvs_vm()
    guest = ipvs_vm.Guest(f"pytest-{os.getpid()}")
    try:
        seconds = guest.boot()
    except ipvs_vm.Missing as exc:
        pytest.skip(f"no IPVS VM: {exc}; install the Debian packages: {ipvs_vm.APT_PACKAGES}")
    print(f"\nipvs-vm: guest booted in {seconds:.1f} s (console log: {guest.console_log})")
    try:
        env = ipvs_vm.passthrough_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        yield IpvsGuest(guest, env=env)
    finally:
        guest.stop()
        shutil.rmtree(guest.dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _loop_logs_on_failure(request):
    """When a test that uses a running loop (tests/kernel/kernel_loop.py) fails, print its workers' logs."""
    failed = request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        from tests.kernel.kernel_loop import Loop

        for value in request.node.funcargs.values():
            if isinstance(value, Loop):
                print(value.logs())
