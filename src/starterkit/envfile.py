"""Read and update ``.env`` files without disturbing what is already in them."""

from __future__ import annotations

import os
from pathlib import Path

SECRET_FILE_MODE = 0o600


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` pairs of an env file (comments, blanks and ``export`` prefixes ignored)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        key, value = _parse_line(line)
        if key:
            values[key] = value
    return values


def _parse_line(line: str) -> tuple[str | None, str]:
    stripped = line.strip()
    if not stripped or stripped.startswith("#") or "=" not in stripped:
        return None, ""
    key, _, value = stripped.removeprefix("export ").partition("=")
    return key.strip(), value.strip().strip("'\"")


def write_env_values(path: Path, values: dict[str, str], *, force: bool = False) -> list[str]:
    """Set ``values`` in the env file at ``path``, creating it with mode 0600.

    Existing non-empty values are kept unless ``force``; other lines are left as they are.
    The file is made 0600 because it now holds secrets.

    Returns:
        The keys that were written.
    """
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    written: list[str] = []
    pending = dict(values)
    for index, line in enumerate(lines):
        key, current = _parse_line(line)
        if key in pending:
            new_value = pending.pop(key)
            if force or not current:
                lines[index] = f"{key}={new_value}"
                written.append(key)
    for key, value in pending.items():
        lines.append(f"{key}={value}")
        written.append(key)
    if written:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        path.chmod(SECRET_FILE_MODE)
    return written
