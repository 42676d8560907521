"""Count the SQL statements a piece of code sends, for tests that pin query counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from starterkit import StarterKit


@contextmanager
def statements_of(kit: StarterKit) -> Iterator[list[str]]:
    """Collect the SQL text of every statement ``kit``'s engine executes inside the block."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(kit.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(kit.engine.sync_engine, "before_cursor_execute", record)
