"""A real SMTP server (aiosmtpd) on a free loopback port, in a thread of the test process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    """One message as the server got it."""

    sender: str
    recipients: list[str]
    message: Message


@dataclass
class RecordingHandler:
    """Keeps every message; while ``gate`` is set and closed, holds each one before answering.

    The gate lets a test play a slow mail server: the client waits for the answer to DATA
    until the test opens the gate.
    """

    received: list[Received] = field(default_factory=list)
    gate: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.arrived.set()
        if self.gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.received.append(
            Received(
                sender=str(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                message=message_from_bytes(content),
            )
        )
        return "250 Message accepted for delivery"


class _FreePortController(Controller):
    """Binds port 0 and learns the port the system chose before the readiness probe."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd is untyped here


@dataclass
class SmtpServer:
    """A running server: where it listens and what it received."""

    host: str
    port: int
    handler: RecordingHandler


@contextmanager
def smtp_server(**smtp_options: Any) -> Iterator[SmtpServer]:
    """Run an SMTP server on 127.0.0.1 for the duration of the block.

    Args:
        smtp_options: passed to aiosmtpd's ``SMTP`` (e.g. ``authenticator``).
    """
    handler = RecordingHandler()
    controller = _FreePortController(handler, hostname="127.0.0.1", port=0, **smtp_options)
    controller.start()
    try:
        yield SmtpServer(host="127.0.0.1", port=controller.port, handler=handler)
    finally:
        if handler.gate is not None:
            handler.gate.set()  # never leave a held client behind
        controller.stop()
