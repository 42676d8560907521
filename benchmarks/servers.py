"""Server processes for the benchmarks: ``starterkit serve`` and the bare FastAPI floor.

Each server is a subprocess on a free loopback port, logging into a file of the run's temporary
folder (shown when it fails to start). :meth:`Server.stop` is safe to call twice, so callers
register it with an ``ExitStack`` and every server ends however the run ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.processes import free_port

FLOOR_SCRIPT = Path(__file__).resolve().with_name("floor_app.py")


@dataclass
class Server:
    """One running server process."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        """The serving process (with one worker, uvicorn serves in the process it starts in)."""
        return self.process.pid

    def rss_mb(self) -> float:
        """Resident memory (``VmRSS`` of /proc/PID/status) in MB (10^6 bytes)."""
        status = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; a stopped server is left alone."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server printed."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def server_env(settings: dict[str, str]) -> dict[str, str]:
    """This environment without STARTERKIT_* variables, plus ``settings`` as STARTERKIT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARTERKIT_")}
    env.update({f"STARTERKIT_{key.upper()}": value for key, value in settings.items()})
    return env


def start_server(
    name: str,
    command: list[str],
    *,
    folder: Path,
    env: dict[str, str],
    ready_path: str,
    port: int,
    cpus: str | None = None,
    timeout: float = 60,
) -> Server:
    """Start ``command`` in ``folder`` and wait until ``ready_path`` answers 200.

    Raises:
        RuntimeError: the server exited or did not answer in time (its log is included).
    """
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]  # taskset execs: the PID stays the server's
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.base_url}{ready_path}", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name} did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def start_starterkit(
    name: str, *, folder: Path, settings: dict[str, str], cpus: str | None = None
) -> Server:
    """``starterkit serve`` with ``settings``; keys starting with ``--`` are ``serve``
    options instead, with their value or ``""`` for a flag (default: one worker, default server
    options)."""
    port = free_port()
    command = [sys.executable, "-m", "starterkit", "serve", "--port", str(port), "--no-migrate"]
    options = {key: value for key, value in settings.items() if key.startswith("--")}
    for option, value in options.items():  # serve's own options, such as --workers 2
        command += [option, value] if value else [option]  # a flag such as --no-access-log
    settings = {key: value for key, value in settings.items() if key not in options}
    return start_server(
        name,
        command,
        folder=folder,
        env=server_env(settings),
        ready_path="/api/v1/health/live",
        port=port,
        cpus=cpus,
    )


def start_floor(*, folder: Path, settings: dict[str, str], cpus: str | None = None) -> Server:
    """The bare app of ``floor_app.py``, served by ``starterkit serve`` with ``settings``."""
    port = free_port()
    return start_server(
        "floor",
        [sys.executable, str(FLOOR_SCRIPT), "--port", str(port)],
        folder=folder,
        env=server_env(settings),
        ready_path="/ping",
        port=port,
        cpus=cpus,
    )


def starterkit_cli(*args: str, folder: Path, settings: dict[str, str], stdin: str = "") -> str:
    """Run ``starterkit ARGS`` like a user would; return its output or raise with it."""
    finished = subprocess.run(
        [sys.executable, "-m", "starterkit", *args],
        cwd=folder,
        env=server_env(settings),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"starterkit {' '.join(args)} failed:\n{finished.stderr}")
    return finished.stdout
