"""Tables of benchmark results, as text for the terminal and Markdown for docs/performance.md.

:func:`write_section` replaces one configuration's part of the Markdown page (between its
``<!-- benchmark:NAME:begin/end -->`` markers) and leaves the rest of the page alone, so the
SQLite and PostgreSQL runs can be recorded one after the other.
"""

# The tables print the multiplication sign and the en dash on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.wrk_runner import WrkResult
from starterkit import __version__

ROOT = Path(__file__).resolve().parents[1]
WHERE_THE_TIME_GOES = "## Where the time goes"
# The page --markdown starts from when it does not exist yet.
PAGE_TEMPLATE = Path(__file__).with_name("performance_template.md")


@dataclass(frozen=True)
class Target:
    """A goal from the targets table and whether a figure meets it."""

    text: str
    limit: float
    at_least: bool

    def met(self, value: float) -> bool:
        return value >= self.limit if self.at_least else value <= self.limit


@dataclass
class Throughput:
    """wrk runs of one endpoint, one per round."""

    name: str
    target: Target | None
    runs: list[WrkResult] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(run.rate for run in self.runs)

    def row(self, floor_rate: float) -> list[str]:
        rates = [run.rate for run in self.runs]
        ratio = self.rate / floor_rate if floor_rate else 0.0
        failures = sum(run.errors + run.non2xx for run in self.runs)
        met = "" if self.target is None else ("yes" if self.target.met(ratio) else "**no**")
        return [
            self.name,
            f"{self.rate:,.0f} ({min(rates):,.0f}–{max(rates):,.0f})",
            f"{statistics.median(run.p50_ms for run in self.runs):.2f} ms",
            f"{statistics.median(run.p99_ms for run in self.runs):.2f} ms",
            f"{max(run.p99_ms for run in self.runs):.2f} ms",
            f"{ratio:.2f}×",
            self.target.text if self.target else "",
            met if not failures else f"{met} ({failures:,} failed requests)".strip(),
        ]


@dataclass(frozen=True)
class Finding:
    """A figure that is not a throughput: latency ratio, wall time, memory."""

    name: str
    measured: str
    target: str
    met: bool


THROUGHPUT_HEADER = ["scenario", "req/s median (min–max)", "p50", "p99", "p99 worst round"]
THROUGHPUT_HEADER += ["ratio to floor"]
THROUGHPUT_HEADER += ["target", "met?"]
FINDING_HEADER = ["scenario", "measured", "target", "met?"]


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded with spaces, for the terminal."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table; ``|`` in cells is escaped."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or "unknown CPU"
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, flags=re.MULTILINE)
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def _memory() -> str:
    try:
        meminfo = Path("/proc/meminfo").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, flags=re.MULTILINE)
    return f"{int(match.group(1)) / 1024 / 1024:.1f} GiB" if match else "unknown"


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    # Read-only git commands only: the benchmark never changes the repository.
    return subprocess.run(
        ["git", "-C", str(ROOT), *args],  # noqa: S607 - git from PATH, like a developer's shell
        capture_output=True,
        text=True,
        check=False,
    )


def git_commit() -> str:
    """The checked-out commit, with ``+ local changes`` when tracked files differ from it."""
    head = _git("rev-parse", "--short=12", "HEAD")
    if head.returncode != 0:
        return "unknown (not a git checkout)"
    dirty = _git("diff-index", "--quiet", "HEAD", "--").returncode != 0
    return head.stdout.strip() + (" + local changes" if dirty else "")


def _server_stack() -> str:
    import uvicorn  # noqa: PLC0415

    parts = [f"uvicorn {uvicorn.__version__}"]
    for module in ("uvloop", "httptools"):
        try:
            imported = __import__(module)
        except ImportError:
            continue
        parts.append(f"{module} {getattr(imported, '__version__', '')}".strip())
    return ", ".join(parts)


def machine(extra: dict[str, str]) -> dict[str, str]:
    """What the figures were measured on, plus ``extra`` (database, back end…)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{_cpu_model()}, {cpus} cores usable",
        "memory": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "starterkit": f"{__version__} at commit {git_commit()}",
        "server": _server_stack(),
        **extra,
    }


def command_line() -> str:
    """How this run was started, relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    # Passwords in --database-url / --redis-url stay out of the report.
    words = [re.sub(r"(://[^:/@\s]*:)[^@/\s]+@", r"\1***@", word) for word in sys.argv[1:]]
    return shlex.join(["python", str(shown), *words])


@dataclass
class Report:
    """Everything one run prints."""

    title: str
    machine: dict[str, str]
    command: str
    settings: str
    floor: Throughput | None = None
    throughput: list[Throughput] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def throughput_rows(self) -> list[list[str]]:
        if self.floor is None or not self.floor.runs:
            return []
        rows = [self.floor.row(self.floor.rate)]
        return rows + [t.row(self.floor.rate) for t in self.throughput if t.runs]

    def finding_rows(self) -> list[list[str]]:
        return [[f.name, f.measured, f.target, "yes" if f.met else "**no**"] for f in self.findings]

    def as_text(self) -> str:
        parts = [f"== {self.title}", f"command: {self.command}"]
        parts += [f"{key}: {value}" for key, value in self.machine.items()]
        parts.append(f"settings: {self.settings}")
        if rows := self.throughput_rows():
            parts += ["", text_table(THROUGHPUT_HEADER, _plain(rows))]
        if rows := self.finding_rows():
            parts += ["", text_table(FINDING_HEADER, _plain(rows))]
        parts += [f"note: {note}" for note in self.notes]
        return "\n".join(parts)

    def as_markdown(self) -> str:
        parts = [
            "```console",
            f"$ {self.command}",
            "```",
            "",
            markdown_table(["measured on", ""], [[k, v] for k, v in self.machine.items()]),
            "",
            f"Settings: {self.settings}",
        ]
        if rows := self.throughput_rows():
            parts += ["", markdown_table(THROUGHPUT_HEADER, rows)]
        if rows := self.finding_rows():
            parts += ["", markdown_table(FINDING_HEADER, rows)]
        if self.notes:
            parts += ["", *(f"- {note}" for note in self.notes)]
        return "\n".join(parts)


def _plain(rows: list[list[str]]) -> list[list[str]]:
    """Rows without Markdown emphasis: a missed target reads NO on the terminal."""
    return [[cell.replace("**no**", "NO") for cell in row] for row in rows]


def write_section(path: Path, key: str, title: str, body: str) -> None:
    """Put ``body`` between the ``key`` markers of ``path`` (created from ``PAGE_TEMPLATE``).

    A page without those markers gets a new ``## title`` section before "Where the time goes".
    """
    begin, end = f"<!-- benchmark:{key}:begin -->", f"<!-- benchmark:{key}:end -->"
    text = (path if path.exists() else PAGE_TEMPLATE).read_text(encoding="utf-8")
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        section = f"## {title}\n\n{block}\n\n"
        at = text.find(WHERE_THE_TIME_GOES)
        text = text[:at] + section + text[at:] if at >= 0 else text.rstrip() + "\n\n" + section
    path.write_text(text.rstrip() + "\n", encoding="utf-8")
