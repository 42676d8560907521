"""Count the SQL statements a piece of code sends, for tests that pin query counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from starterkit import StarterKit


@contextmanager
def statements_of(kit: StarterKit) -> Iterator[list[str]]:
    """Collect the SQL text of every statement ``kit``'s engines execute inside the block.

    That is the engine of sessions and, where they have their own pools (a SQLite file), the
    engines of starterkit's own reads and one-statement writes.
    """
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    engines = [kit.engine.sync_engine]
    for other in (kit.read_engine, kit.autocommit_engine):
        if other.pool is not kit.engine.pool:
            engines.append(other.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
