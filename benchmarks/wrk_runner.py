"""Drive one server with wrk (Debian package ``wrk``) and read its figures back.

Every run goes through a small generated Lua script: it sets the method, body and headers, and
its ``done`` hook prints the request count, duration, errors and the 50th/99th latency
percentiles on one line that :func:`parse_report` reads, so nothing depends on the layout of
wrk's human-readable summary.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "wrk is not installed; install wrk: apt-get install wrk"

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""
_REPORT = re.compile(
    r"BENCH requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) errors=(\d+) non2xx=(\d+)"
)


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    non2xx: int

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str:
    """The wrk executable, or exit with the command that installs it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(f"Error: {INSTALL_HINT}")
    return path


def wrk_version() -> str:
    """wrk's version line, e.g. ``wrk debian/4.1.0-3+b2 [epoll]``."""
    # wrk -v prints its banner and usage, then exits with status 1.
    output = subprocess.run(
        [wrk_path(), "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return re.sub(r"\s+Copyright.*", "", output[0]) if output else "wrk"


def lua_string(value: str) -> str:
    """A Lua string literal for ``value`` (ASCII only: LuaJIT has no ``\\u`` escapes)."""
    if not value.isascii():
        raise ValueError("wrk scripts here carry ASCII text only")
    return json.dumps(value)


def request_script(
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    paths: Sequence[str] = (),
    stop_after: int | None = None,
) -> str:
    """Lua for wrk: one request shape, optionally cycling ``paths``, optionally stopping.

    Args:
        method: HTTP method of every request.
        headers: extra request headers (``Authorization``, ``Content-Type``…).
        body: request body, sent as is.
        paths: when given, the requests cycle through these paths instead of the URL's.
        stop_after: stop after this many responses (use with one wrk thread).
    """
    lines = [f"wrk.method = {lua_string(method)}"]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{lua_string(name)}] = {lua_string(value)}")
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    if paths:
        listed = ", ".join(lua_string(path) for path in paths)
        lines += [
            f"local paths = {{{listed}}}",
            "local next_path = 0",
            "request = function()",
            "  next_path = next_path % #paths + 1",
            "  return wrk.format(nil, paths[next_path])",
            "end",
        ]
    if stop_after is not None:
        lines += [
            f"local limit, seen = {int(stop_after)}, 0",
            "response = function(status, headers, body)",
            "  seen = seen + 1",
            "  if seen >= limit then wrk.thread:stop() end",
            "end",
        ]
    return "\n".join(lines) + "\n" + _DONE


def parse_report(output: str) -> WrkResult:
    """Read the line printed by the script's ``done`` hook."""
    match = _REPORT.search(output)
    if match is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    requests, duration_us, p50_us, p99_us, errors, non2xx = (int(g) for g in match.groups())
    return WrkResult(
        requests=requests,
        seconds=duration_us / 1e6,
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        errors=errors,
        non2xx=non2xx,
    )


def run_wrk(
    url: str,
    script: str,
    *,
    folder: Path,
    connections: int,
    seconds: int,
    cpus: str | None = None,
) -> WrkResult:
    """Run wrk (one thread) against ``url`` with the Lua ``script`` and return its figures.

    Args:
        url: the target; with a ``paths`` script only its scheme, host and port count.
        script: Lua from :func:`request_script`.
        folder: where the script file is written.
        connections: connections kept open.
        seconds: how long to drive the server (a ``stop_after`` script may end sooner).
        cpus: ``taskset -c`` list to pin wrk to, or None.
    """
    path = folder / "wrk-script.lua"
    path.write_text(script, encoding="ascii")
    command = [wrk_path(), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    command += ["-s", str(path), url]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    finished = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=seconds + 60
    )
    if finished.returncode != 0:
        raise RuntimeError(f"wrk failed ({finished.returncode}):\n{finished.stderr}")
    return parse_report(finished.stdout)
