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

    That is the engine of sessions and, where it has its own pool (a SQLite file), the engine
    of starterkit's own reads.
    """
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]))

    engines = [kit.engine.sync_engine]
    if kit.read_engine.pool is not kit.engine.pool:
        engines.append(kit.read_engine.sync_engine)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)
