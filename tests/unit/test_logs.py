"""Log records as JSON lines and text, with the request id of the request that wrote them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import pathlib
import sys
from collections.abc import Iterator

import pytest

from starterkit.logs import (
    ACCESS_LOGGER,
    REQUEST_ID,
    AccessLine,
    AccessLogHandler,
    AccessTextFormatter,
    JSONFormatter,
    RequestIdFilter,
    logging_config,
    write_access_line,
)


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("starterkit.auth", logging.INFO, __file__, 1, message, (), None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_json_line_carries_the_request_id_and_the_access_fields() -> None:
    token = REQUEST_ID.set("abc123")
    try:
        entry = record("GET /x 200", method="GET", route="/x", status=200, duration_ms=1.5)
        assert RequestIdFilter().filter(entry)
        line = JSONFormatter().format(entry)
    finally:
        REQUEST_ID.reset(token)
    parsed = json.loads(line)
    assert parsed["request_id"] == "abc123"
    assert (parsed["level"], parsed["logger"], parsed["message"]) == (
        "INFO",
        "starterkit.auth",
        "GET /x 200",
    )
    assert (parsed["method"], parsed["route"], parsed["status"], parsed["duration_ms"]) == (
        "GET",
        "/x",
        200,
        1.5,
    )


def test_outside_a_request_the_id_is_null_and_a_traceback_stays_on_one_line() -> None:
    try:
        raise ValueError("broken\nin two lines")
    except ValueError:
        entry = record("failed")
        entry.exc_info = sys.exc_info()
    RequestIdFilter().filter(entry)
    assert entry.request_id == "-"  # type: ignore[attr-defined]
    line = JSONFormatter().format(entry)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["request_id"] is None
    assert "ValueError: broken" in parsed["exception"]


def test_the_config_turns_the_access_log_on_and_off_in_both_formats() -> None:
    for log_format in ("text", "json"):
        on = logging_config(log_format)
        off = logging_config(log_format, access_log=False)
        assert on["loggers"][ACCESS_LOGGER]["level"] == "INFO"
        assert off["loggers"][ACCESS_LOGGER]["level"] == "WARNING"
        assert on["loggers"]["uvicorn.access"]["handlers"] == []
    cli = logging_config("text", server=False)
    assert "uvicorn" not in json.dumps(cli["formatters"])  # `starterkit --help` stays light


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Put back what ``dictConfig`` changes on the loggers it configures."""
    names = [*logging_config("text")["loggers"], ""]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate, logger.disabled)
    yield
    for name, (handlers, level, propagate, disabled) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate, logger.disabled = handlers, propagate, disabled
        logger.setLevel(level)


@pytest.mark.usefixtures("logging_restored")
def test_an_access_line_written_directly_reads_as_its_log_record_would(
    tmp_path: pathlib.Path,
) -> None:
    line = AccessLine("10.0.0.1", "GET", "/api/v1/items/{item_id}", 404, 1.25)
    for log_format in ("text", "json"):
        logging.config.dictConfig(logging_config(log_format))
        logger = logging.getLogger(ACCESS_LOGGER)
        (handler,) = logger.handlers
        assert isinstance(handler, AccessLogHandler)
        written = tmp_path / f"{log_format}.log"
        with written.open("w") as stream:
            handler.setStream(stream)
            token = REQUEST_ID.set("req-1")
            try:
                write_access_line(logger, line)  # straight to the stream
                logger.addHandler(logging.NullHandler())  # now a record is made
                write_access_line(logger, line)
            finally:
                REQUEST_ID.reset(token)
                logger.handlers = [handler]
        direct, recorded = written.read_text().splitlines()
        if log_format == "text":
            assert (
                direct
                == recorded
                == "INFO:     10.0.0.1 GET /api/v1/items/{item_id} 404 1.2 ms [req-1]"
            )
        else:
            first, second = json.loads(direct), json.loads(recorded)
            assert first.pop("time")[:16] == second.pop("time")[:16]
            assert first == second
            assert first["route"] == "/api/v1/items/{item_id}"
            assert (first["status"], first["duration_ms"], first["request_id"]) == (
                404,
                1.25,
                "req-1",
            )


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_the_lines_of_one_event_loop_turn_leave_in_one_write() -> None:
    handler = AccessLogHandler(CountingStream())
    handler.setFormatter(AccessTextFormatter())
    handler.addFilter(RequestIdFilter())
    stream = handler.stream
    lines = [AccessLine("10.0.0.1", "GET", f"/r{n}", 200, 0.5) for n in range(3)]

    async def serve() -> None:
        for line in lines[:2]:
            assert handler.write(line)
        assert stream.getvalue() == ""  # not before the turn ends
        await asyncio.sleep(0)
        assert stream.writes == 1
        assert handler.write(lines[2])
        # A record (not an access line) keeps its place after the lines before it.
        handler.emit(logging.makeLogRecord({"msg": "a record", "levelname": "INFO"}))
        handler.flush()

    asyncio.run(serve())
    written = stream.getvalue().splitlines()
    assert [text.split()[3] for text in written[:3]] == ["/r0", "/r1", "/r2"]
    assert written[3] == "INFO:     a record [-]"
