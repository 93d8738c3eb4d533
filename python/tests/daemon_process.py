"""Starts the real ``target/debug/dify-plugin-daemon`` for end-to-end tests and packages the test plugin.

Owns: ``DaemonProcess`` (a daemon on free ports with its own SQLite database, storage and working
directories under a temporary directory, stopped with its whole process group) and ``build_package``
(zips ``tests/e2e_plugin`` into a ``.difypkg`` with the plugin's top-level ``version`` replaced).
Must not: skip anything: a missing binary or Python 3.12 is a test failure with a clear message.
"""

from __future__ import annotations

import glob
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAEMON_BINARY = REPO_ROOT / "target" / "debug" / "dify-plugin-daemon"
PLUGIN_DIR = Path(__file__).resolve().parent / "e2e_plugin"
STARTUP_TIMEOUT = 60.0


ADMIN_API_KEY = "e2e-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _usable_python(candidate: str) -> bool:
    """True when ``candidate`` runs and is Python >= 3.12 (pyenv shims can exist without a usable version)."""
    try:
        done = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def python_for_plugins() -> str:
    """A Python >= 3.12 for plugin environments: the test runner's setting, then PATH, then pyenv."""
    candidates: list[str] = []
    configured = os.environ.get("PYTHON_INTERPRETER_PATH")
    if configured:
        candidates.append(configured)
    for name in ("python3.13", "python3.12"):
        found = shutil.which(name)
        if found:
            candidates.append(found)
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{root}/versions/3.1[2-9]*/bin/python3"), reverse=True)
    for candidate in candidates:
        if _usable_python(candidate):
            return candidate
    pytest.fail(f"no usable Python >= 3.12 for plugin environments (tried {candidates}): set PYTHON_INTERPRETER_PATH")


def uv_binary() -> str:
    configured = os.environ.get("UV_PATH")
    if configured and Path(configured).exists():
        return configured
    found = shutil.which("uv")
    if found:
        return found
    pytest.fail("uv not found: set UV_PATH (scripts/test does) or put uv on PATH")


def build_package(version: str) -> bytes:
    """The test plugin as ``.difypkg`` bytes, with ``version`` in the manifest."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(PLUGIN_DIR.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            name = path.relative_to(PLUGIN_DIR).as_posix()
            data = path.read_bytes()
            if name == "manifest.yaml":
                data = re.sub(rb"(?m)^version: .*$", f"version: {version}".encode(), data)
            archive.writestr(name, data)
    return buffer.getvalue()


class DaemonProcess:
    """One daemon process; use ``start()`` / ``stop()``."""

    def __init__(self, workdir: Path) -> None:
        if not DAEMON_BINARY.exists():
            pytest.fail(
                f"daemon binary {DAEMON_BINARY} is missing: build it first (cargo build -p dify-daemon, "
                "or ./scripts/test which builds every binary)"
            )
        self.workdir = workdir
        # Known once the daemon listens: it picks a free port itself (SERVER_PORT=0) and names it in
        # its "listening on" line, so no other process can take the port in between.
        self.port = 0
        self.key = f"e2e-{uuid.uuid4()}"
        self.url = ""
        self.log_path = workdir / "daemon.log"
        self._process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SERVER_HOST": "127.0.0.1",
                "SERVER_PORT": "0",
                "SERVER_KEY": self.key,
                "PLATFORM": "local",
                "DB_TYPE": "sqlite",
                "DB_SQLITE_PATH": str(self.workdir / "daemon.db"),
                "PLUGIN_STORAGE_LOCAL_ROOT": str(self.workdir / "storage"),
                "PLUGIN_WORKING_PATH": str(self.workdir / "cwd"),
                "PYTHON_INTERPRETER_PATH": python_for_plugins(),
                "UV_PATH": uv_binary(),
                "FORCE_VERIFYING_SIGNATURE": "false",
                "PLUGIN_REMOTE_INSTALLING_ENABLED": "false",
                "PLUGIN_REMOTE_INSTALLING_PORT": "0",
                "DIFY_INNER_API_URL": f"http://127.0.0.1:{free_port()}",
                "DIFY_INNER_API_KEY": "e2e-inner-key",
                "LOG_LEVEL": "INFO",
                "ADMIN_API_ENABLED": "true",
                "ADMIN_API_KEY": ADMIN_API_KEY,
            }
        )
        for name in ("DB_HOST", "REDIS_HOST", "RUST_LOG"):
            env.pop(name, None)
        return env

    def start(self) -> "DaemonProcess":
        log = open(self.log_path, "wb")
        self._process = subprocess.Popen(
            [str(DAEMON_BINARY)],
            cwd=self.workdir,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"daemon exited with {self._process.returncode} during start-up:\n{self.log_tail()}")
            if not self.port:
                self.port = self._listening_port()
                if not self.port:
                    time.sleep(0.1)
                    continue
                self.url = f"http://127.0.0.1:{self.port}"
            try:
                if httpx.get(f"{self.url}/health/check", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"daemon did not answer /health/check within {STARTUP_TIMEOUT:g}s:\n{self.log_tail()}")

    def _listening_port(self) -> int:
        """The port of the daemon's "dify-plugin-daemon listening on <host>:<port>" line, 0 before it."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return 0
        found = re.search(r"dify-plugin-daemon listening on \S*:(\d+)", text)
        return int(found.group(1)) if found else 0

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no daemon log)"

    def stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
