"""Log lines as text or JSON, each with the request id; the access log with route templates.

``RequestContextMiddleware`` puts each request's id in :data:`REQUEST_ID` (a context variable),
so every record logged while the request runs carries it, whichever logger wrote it.
:func:`logging_config` is the ``dictConfig`` ``starterkit serve`` gives uvicorn and the CLI
uses for its own commands: LOG_FORMAT ``text`` (readable lines, uvicorn's style) or ``json``
(one object a line: ``time``, ``level``, ``logger``, ``message``, ``request_id``, and for
access lines ``client``, ``method``, ``route``, ``status`` and ``duration_ms``).

The access log is starterkit's own (logger ``starterkit.access``), written after each
response by the metrics middleware, which already knows the route template and the duration;
uvicorn's access log, which knows neither, is turned off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("starterkit_request_id", default=None)
ACCESS_LOGGER = "starterkit.access"
# The extra fields of an access record, in the order a JSON line shows them.
ACCESS_FIELDS = ("client", "method", "route", "status", "duration_ms")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` (or ``-`` outside a request) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object a line; a traceback goes into ``exception`` as one string."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        entry: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": None if request_id == "-" else request_id,
        }
        for field in ACCESS_FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    def access_line(self, line: AccessLine, request_id: str | None) -> str:
        """What :meth:`format` makes of ``line``'s record, without making the record."""
        entry = {
            "time": _timestamp(time.time()),
            "level": "INFO",
            "logger": ACCESS_LOGGER,
            "message": line.message(),
            "request_id": request_id,
            **line._asdict(),  # the ACCESS_FIELDS, in their order
        }
        return json.dumps(entry, ensure_ascii=False, default=str)


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class AccessTextFormatter(logging.Formatter):
    """An access line in uvicorn's layout (``INFO:     … [request id]``), without colours.

    Written for every request, so kept to one f-string: uvicorn's formatter copies each
    record to colour its level, which cost more than the rest of a probe's request.
    """

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "-")
        return f"{record.levelname + ':':<9} {record.getMessage()} [{request_id}]"

    def access_line(self, line: AccessLine, request_id: str | None) -> str:
        """What :meth:`format` makes of ``line``'s record, without making the record."""
        return f"INFO:     {line.message()} [{request_id or '-'}]"


class AccessLine(NamedTuple):
    """The fields of one access line."""

    client: str
    method: str
    route: str
    status: int
    duration_ms: float

    def message(self) -> str:
        """The line's text: the route template, never the path or query (they can carry
        tokens); the client is the address the server believed."""
        return f"{self.client} {self.method} {self.route} {self.status} {self.duration_ms:.1f} ms"


class AccessLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The access log's stream handler in :func:`logging_config`.

    Besides handling records like any stream handler, it writes an access line straight from
    its fields (:meth:`write`): making, filtering and formatting a log record for every
    request took about 6 µs, a fifth of a probe's whole request. And the lines an event-loop
    turn writes leave in one ``write`` at the end of that turn, not one system call each
    (about 9% of a probe's throughput over HTTP): no line waits for another request, only for
    the turn that wrote it to end.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []

    def write(self, line: AccessLine) -> bool:
        """Write ``line`` as the handler's formatter would; False when this handler has been
        configured beyond what :func:`logging_config` sets up, so a record must be made."""
        formatter = self.formatter
        if (
            self.level > logging.INFO
            or not isinstance(formatter, AccessTextFormatter | JSONFormatter)
            or any(type(check) is not RequestIdFilter for check in self.filters)
        ):
            return False
        text = formatter.access_line(line, REQUEST_ID.get()) + self.terminator
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to wait for: write it now
            loop = None
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(text)
            first_of_turn = len(self._pending) == 1
        if loop is None:
            self.flush()
        elif first_of_turn:
            loop.call_soon(self.flush)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()  # the lines before this record go first
        super().emit(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        super().flush()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        try:
            self.stream.write(text)  # flushed by flush(), emit()'s included
        except Exception:  # noqa: BLE001 - as StreamHandler.emit: never fail the request
            self.handleError(logging.makeLogRecord({"msg": text, "name": ACCESS_LOGGER}))


def write_access_line(logger: logging.Logger, line: AccessLine) -> None:
    """Log ``line`` at INFO on ``logger`` (the access logger).

    When the logger has only its :class:`AccessLogHandler` (as :func:`logging_config` sets it
    up), the handler writes the line; otherwise (tests' capture handlers, an operator's own
    configuration) a record goes through the logger like any other. Call it only when the
    logger is enabled for INFO.
    """
    handlers = logger.handlers
    if (
        len(handlers) == 1
        and type(handlers[0]) is AccessLogHandler
        and not logger.filters
        and handlers[0].write(line)
    ):
        return
    logger.handle(_access_record(logger, line))


def _access_record(logger: logging.Logger, line: AccessLine) -> logging.LogRecord:
    # Like logger.info(..., extra=...) without looking up the caller's file and line, which an
    # access line never shows and which is a good part of its cost.
    return logger.makeRecord(
        logger.name, logging.INFO, "", 0, "%s", (line.message(),), None, extra=line._asdict()
    )


def logging_config(
    log_format: LogFormat, *, access_log: bool = True, server: bool = True
) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn, starterkit and the libraries below them.

    Args:
        log_format: ``text`` or ``json``.
        access_log: write one line per request (``starterkit.access`` at INFO).
        server: text lines in uvicorn's style (``serve``); otherwise plain ``LEVEL: logger:
            message`` lines that need no uvicorn import (the other commands).
    """
    if log_format == "json":
        formatter: dict[str, Any] = {"()": "starterkit.logs.JSONFormatter"}
        access_formatter = formatter
    elif not server:
        formatter = {"format": "%(levelname)s: %(name)s: %(message)s"}
        access_formatter = formatter
    else:
        formatter = {
            "()": "uvicorn.logging.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        }
        access_formatter = {"()": "starterkit.logs.AccessTextFormatter"}
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "filters": ["request_id"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "starterkit.logs.RequestIdFilter"}},
        "formatters": {"default": formatter, "access": access_formatter},
        "handlers": {
            "default": {**handler, "formatter": "default"},
            "access": {
                **handler,
                "class": "starterkit.logs.AccessLogHandler",
                "formatter": "access",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            # Replaced by starterkit.access, which knows the route template and the duration.
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "starterkit": {"handlers": ["default"], "level": "INFO", "propagate": False},
            ACCESS_LOGGER: {
                "handlers": ["access"],
                "level": "INFO" if access_log else "WARNING",
                "propagate": False,
            },
            "alembic": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }


def configure_cli_logging() -> None:
    """Log the CLI's own commands in LOG_FORMAT (read from the environment or ``.env``)."""
    import logging.config  # noqa: PLC0415
    import os  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from starterkit.envfile import read_env_file  # noqa: PLC0415

    name = "STARTERKIT_LOG_FORMAT"
    value = os.environ.get(name) or read_env_file(Path(".env")).get(name, "text")
    log_format: LogFormat = "json" if value.strip().lower() == "json" else "text"
    logging.config.dictConfig(logging_config(log_format, server=False))
    global _cli_format  # noqa: PLW0603 - set once, when the command line starts
    _cli_format = log_format


_cli_format: LogFormat = "text"
_CLI_LOGGER = logging.getLogger("starterkit.cli")


def say(message: str, *, warning: bool = False) -> None:
    """Tell the person running a command something: a line on stderr, or with LOG_FORMAT=json a
    log record, so that every line ``serve`` writes is one JSON object."""
    if _cli_format == "json":
        _CLI_LOGGER.log(logging.WARNING if warning else logging.INFO, message)
        return
    import sys  # noqa: PLC0415

    print(f"Warning: {message}" if warning else message, file=sys.stderr)  # noqa: T201
