"""Run the real ``starterkit`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def starterkit_command(*args: str) -> list[str]:
    """The CLI invoked through the interpreter running the tests."""
    return [sys.executable, "-m", "starterkit", *args]


# Variables hosting platforms set, which starterkit reads when its own are unset.
PLATFORM_VARIABLES = ("DATABASE_URL", "REDIS_URL", "PORT")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without starterkit's or the platforms' settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STARTERKIT_") and k not in PLATFORM_VARIABLES
    }
    env.update(extra)
    return env


def wait_until_healthy(base_url: str, process: subprocess.Popen[str], timeout: float) -> None:
    """Poll ``/api/v1/health/live`` until it answers 200, or fail with the server's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"server exited with {process.returncode}:\n{output}")
        try:
            if httpx.get(f"{base_url}/api/v1/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("server did not become healthy in time")


@contextmanager
def running_server(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start ``starterkit serve`` in ``cwd``; yield its base URL and process; stop it."""
    port = free_port()
    process = subprocess.Popen(
        starterkit_command("serve", "--port", str(port), *args),
        cwd=cwd,
        env=env or clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, process, timeout)
        yield base_url, process
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


def stop(process: subprocess.Popen[str]) -> str:
    """Stop the server gracefully (SIGTERM) and return everything it printed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is None or process.stdout.closed:
        return ""
    return process.stdout.read()
