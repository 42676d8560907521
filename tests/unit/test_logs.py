"""Log records as JSON lines and text, with the request id of the request that wrote them."""

from __future__ import annotations

import json
import logging
import sys

from starterkit.logs import (
    ACCESS_LOGGER,
    REQUEST_ID,
    JSONFormatter,
    RequestIdFilter,
    logging_config,
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
