"""UTCDateTime reads SQLite's stored text back as aware UTC datetimes, whatever its layout."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from starterkit.db.base import UTCDateTime

EXPECTED = datetime(2026, 11, 26, 12, 30, 5, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        pytest.param("2026-11-26 12:30:05.123456", EXPECTED, id="as-sqlalchemy-writes-it"),
        pytest.param("2026-11-26T12:30:05.123456", EXPECTED, id="iso-t"),
        pytest.param("2026-11-26 12:30:05", EXPECTED.replace(microsecond=0), id="no-fraction"),
        pytest.param("2026-11-26 14:30:05.123456+02:00", EXPECTED, id="with-offset"),
        pytest.param(None, None, id="null"),
    ],
)
def test_sqlite_text_becomes_an_aware_utc_datetime(
    stored: str | None, expected: datetime | None
) -> None:
    dialect = sqlite.dialect()
    process = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert process is not None
    value = process(stored)
    assert value == expected
    if value is not None:
        assert value.utcoffset() is not None
        assert value.tzinfo == UTC


def test_other_dialects_keep_the_general_path() -> None:
    dialect = postgresql.asyncpg.dialect()  # type: ignore[no-untyped-call]
    process = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    aware = datetime(2026, 11, 26, 14, 30, 5, 123456).astimezone()
    assert process is not None
    value = process(aware)
    assert value == aware
    assert value is not None
    assert value.tzinfo == UTC
