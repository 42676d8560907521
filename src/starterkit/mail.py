"""Email delivery behind one small interface: a backend is an async callable taking a :class:`Mail`.

Three backends ship, chosen by EMAIL_BACKEND:

- ``console`` (the default outside production): prints each message, links included, to the
  log and keeps the last ones in :attr:`ConsoleBackend.outbox`, for development and tests;
- ``smtp``: sends through an SMTP server with the standard library's ``smtplib``, in a worker
  thread, so a slow server never blocks the event loop;
- ``callable``: your own async function, assigned as ``kit.mailer.backend``.

Callers send from background jobs (:mod:`starterkit.background`), never from the request path.
This module is called ``mail`` and not ``email`` so that it never shadows the standard library.
"""

from __future__ import annotations

import collections
import logging
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import TYPE_CHECKING, Literal

import anyio.to_thread

if TYPE_CHECKING:
    from starterkit.settings import Settings

logger = logging.getLogger("starterkit.mail")

OUTBOX_SIZE = 100

SmtpTls = Literal["starttls", "tls", "none"]


@dataclass(frozen=True, slots=True)
class Mail:
    """One plain-text message.

    ``kind`` (e.g. ``"password_reset"``) and ``link`` let a custom backend render its own
    template instead of using ``text``.
    """

    to: str
    subject: str
    text: str
    sender: str
    kind: str = "message"
    link: str | None = None


MailBackend = Callable[[Mail], Awaitable[None]]
"""What sends mail: ``async def send(mail: Mail) -> None``, raising when delivery failed."""


def to_email_message(mail: Mail) -> EmailMessage:
    """The message as the standard library's ``EmailMessage``, with Date and Message-ID."""
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    # The sender's domain, not socket.getfqdn(), which can stall on a DNS lookup.
    domain = parseaddr(mail.sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(mail.text)
    return message


class ConsoleBackend:
    """Prints each message to the log instead of sending it; keeps the latest in ``outbox``.

    The log record is a warning on the ``starterkit.mail`` logger, so it reaches stderr even in
    an app that configured no logging: a mail that was not really sent is worth noticing. It
    shows the sender, recipient, subject and the text as written, not the MIME encoding (whose
    quoted-printable soft line breaks would cut a link into pieces that cannot be copied).
    """

    def __init__(self, *, outbox_size: int = OUTBOX_SIZE) -> None:
        self.outbox: collections.deque[Mail] = collections.deque(maxlen=outbox_size)

    async def __call__(self, mail: Mail) -> None:
        """Log ``mail`` in full and append it to the outbox."""
        self.outbox.append(mail)
        logger.warning(
            "EMAIL_BACKEND=console: this mail was printed, not sent:\n"
            "From: %s\nTo: %s\nSubject: %s\n\n%s",
            mail.sender,
            mail.to,
            mail.subject,
            mail.text,
        )


class SmtpBackend:
    """Sends through an SMTP server with ``smtplib`` in a worker thread.

    ``tls`` is ``starttls`` (connect in plain text, then upgrade; usually port 587), ``tls``
    (TLS from the first byte; usually port 465) or ``none`` (plain text; only for a relay on
    the same host or network). Certificates are verified against the system's trust store.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: SmtpTls,
        username: str = "",
        password: str = "",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.username = username
        self._password = password
        self.timeout = timeout
        self._ssl_context = ssl_context

    async def __call__(self, mail: Mail) -> None:
        """Deliver ``mail``; raises ``smtplib.SMTPException`` or ``OSError`` on failure."""
        message = to_email_message(mail)
        await anyio.to_thread.run_sync(self._deliver, message)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def _deliver(self, message: EmailMessage) -> None:
        client: smtplib.SMTP
        if self.tls == "tls":
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.tls == "starttls":
                client.starttls(context=self._context())
            if self.username:
                client.login(self.username, self._password)
            client.send_message(message)


class Mailer:
    """Sends the runtime's mail through a replaceable backend.

    Assign ``kit.mailer.backend`` to send with anything else (an HTTP mail API, a queue)::

        async def send(mail: Mail) -> None:
            await my_mail_api.send(to=mail.to, subject=mail.subject, text=mail.text)

        kit.mailer.backend = send
    """

    def __init__(self, backend: MailBackend | None, *, sender: str, backend_name: str) -> None:
        """Set up the mailer.

        Args:
            backend: what sends; None drops every mail with a warning (EMAIL_BACKEND
                ``none``, or ``callable`` before the app assigned one).
            sender: the From address of every mail (EMAIL_FROM).
            backend_name: the EMAIL_BACKEND setting, for log messages.
        """
        self.backend = backend
        self.sender = sender
        self._backend_name = backend_name

    @property
    def outbox(self) -> collections.deque[Mail]:
        """The console backend's recent messages (for tests).

        Raises:
            TypeError: the backend is not the console backend.
        """
        if not isinstance(self.backend, ConsoleBackend):
            raise TypeError("only the console mail backend keeps an outbox")
        return self.backend.outbox

    def compose(
        self, *, to: str, subject: str, text: str, kind: str, link: str | None = None
    ) -> Mail:
        """A message from this runtime's sender."""
        return Mail(to=to, subject=subject, text=text, sender=self.sender, kind=kind, link=link)

    async def send(self, mail: Mail) -> None:
        """Hand ``mail`` to the backend. Await this from a background job, not a request.

        Raises:
            Exception: whatever the backend raised; the background job logs it.
        """
        # Addresses are personal data: the log says what was sent, not to whom.
        if self.backend is None:
            logger.warning(
                "EMAIL_BACKEND is %s, so a %s mail was not sent", self._backend_name, mail.kind
            )
            return
        await self.backend(mail)
        logger.info("sent a %s mail", mail.kind)


def build_mailer(settings: Settings) -> Mailer:
    """The mailer EMAIL_BACKEND asks for.

    Unset, it is ``console`` outside production and ``none`` in production, where printing
    password-reset links into the log would hand accounts to whoever reads the log.
    """
    name = settings.email_backend or ("none" if settings.is_production else "console")
    backend: MailBackend | None = None
    if name == "console":
        backend = ConsoleBackend()
    elif name == "smtp":
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        backend = SmtpBackend(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=password,
            timeout=settings.smtp_timeout_seconds,
        )
    return Mailer(backend, sender=settings.email_from, backend_name=name)
