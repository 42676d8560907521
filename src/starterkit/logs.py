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

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

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
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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


class AccessTextFormatter(logging.Formatter):
    """An access line in uvicorn's layout (``INFO:     … [request id]``), without colours.

    Written for every request, so kept to one f-string: uvicorn's formatter copies each
    record to colour its level, which cost more than the rest of a probe's request.
    """

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", "-")
        return f"{record.levelname + ':':<9} {record.getMessage()} [{request_id}]"


def log_access(logger: logging.Logger, message: str, args: tuple[Any, ...], **fields: Any) -> None:
    """Write one access record at INFO, with ``fields`` as its extra attributes.

    Like ``logger.info(message, *args, extra=fields)`` without looking up the caller's file
    and line, which an access line never shows and which is a good part of its cost.
    """
    record = logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None, extra=fields)
    logger.handle(record)


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
            "access": {**handler, "formatter": "access"},
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
