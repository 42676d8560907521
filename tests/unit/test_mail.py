"""Mail backends (console, SMTP against a real server on loopback, callable) and background jobs."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from starterkit.background import BackgroundJobs
from starterkit.mail import ConsoleBackend, Mail, Mailer, SmtpBackend, build_mailer
from starterkit.settings import Settings, settings_problems
from tests.support.processes import free_port
from tests.support.smtp_server import smtp_server

pytestmark = pytest.mark.anyio

MAIL = Mail(
    to="alice@example.com",
    subject="Reset your password",
    text="Open https://app.example/reset-password?token=abc within 30 minutes.\n",
    sender="Example <noreply@example.com>",
    kind="password_reset",
    link="https://app.example/reset-password?token=abc",
)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


async def test_smtp_backend_delivers_a_plain_text_message_to_a_real_server() -> None:
    with smtp_server() as server:
        backend = SmtpBackend(host=server.host, port=server.port, tls="none", timeout=5)
        await backend(MAIL)
    [received] = server.handler.received
    assert received.sender == "noreply@example.com"
    assert received.recipients == ["alice@example.com"]
    message = received.message
    assert message["Subject"] == "Reset your password"
    assert message["From"] == "Example <noreply@example.com>"
    assert message["To"] == "alice@example.com"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Date"]
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert "https://app.example/reset-password?token=abc" in payload.decode()


async def test_smtp_backend_logs_in_when_a_username_is_set() -> None:
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(*args: Any) -> AuthResult:
        login = args[4]  # (server, session, envelope, mechanism, auth_data)
        assert isinstance(login, LoginPassword)
        logins.append((login.login, login.password))
        return AuthResult(success=login.password == b"mail secret", handled=False)

    with smtp_server(authenticator=authenticator, auth_require_tls=False) as server:
        good = SmtpBackend(
            host=server.host, port=server.port, tls="none", username="app", password="mail secret"
        )
        await good(MAIL)
        bad = SmtpBackend(
            host=server.host, port=server.port, tls="none", username="app", password="wrong"
        )
        with pytest.raises(smtplib.SMTPAuthenticationError):
            await bad(MAIL)
    assert (b"app", b"mail secret") in logins
    assert len(server.handler.received) == 1


async def test_starttls_is_required_when_configured() -> None:
    # This server offers no STARTTLS: the backend must refuse to go on in plain text.
    with smtp_server() as server:
        backend = SmtpBackend(host=server.host, port=server.port, tls="starttls", timeout=5)
        with pytest.raises(smtplib.SMTPNotSupportedError):
            await backend(MAIL)
    assert server.handler.received == []


async def test_implicit_tls_does_not_fall_back_to_plain_text() -> None:
    with smtp_server() as server:
        backend = SmtpBackend(host=server.host, port=server.port, tls="tls", timeout=5)
        with pytest.raises((ssl.SSLError, OSError)):
            await backend(MAIL)
    assert server.handler.received == []


async def test_an_unreachable_server_raises_for_the_background_job_to_log() -> None:
    backend = SmtpBackend(host="127.0.0.1", port=free_port(), tls="none", timeout=2)
    with pytest.raises(OSError):  # noqa: PT011 - connection refused has no narrower type
        await backend(MAIL)


async def test_console_backend_logs_the_whole_message_and_keeps_an_outbox(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = ConsoleBackend(outbox_size=2)
    with caplog.at_level(logging.WARNING, logger="starterkit.mail"):
        for number in range(3):
            await backend(Mail(to=f"u{number}@example.com", subject="Hi", text="x", sender="a@b.c"))
        await backend(MAIL)
    assert [mail.to for mail in backend.outbox] == ["u2@example.com", "alice@example.com"]
    assert "Subject: Reset your password" in caplog.text
    assert "https://app.example/reset-password?token=abc" in caplog.text


async def test_console_backend_prints_each_link_whole_on_its_own_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A real reset token is a few hundred characters with "=" in it: the MIME text used to
    # break it into quoted-printable pieces ("token=3DeyJ...=" over six lines).
    link = "http://127.0.0.1:8111/reset-password?token=" + "eyJhbGciOiJIUzI1NiJ9." * 15
    mail = Mail(
        to="alice@example.com",
        subject="Reset your password",
        text=f"Open this link within 30 minutes:\n\n{link}\n\nIt works once.\n",
        sender="Accounts <accounts@example.com>",
        link=link,
    )
    with caplog.at_level(logging.WARNING, logger="starterkit.mail"):
        await ConsoleBackend()(mail)
    printed = caplog.records[-1].getMessage().splitlines()
    assert link in printed
    assert "To: alice@example.com" in printed
    assert "From: Accounts <accounts@example.com>" in printed
    assert not any(line.endswith("=") or "=3D" in line for line in printed)


async def test_a_mailer_without_backend_drops_mail_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailer = build_mailer(settings(email_backend="callable"))
    assert mailer.backend is None
    await mailer.send(MAIL)
    assert "EMAIL_BACKEND is callable, so a password_reset mail was not sent" in caplog.text
    assert "alice@example.com" not in caplog.text
    with pytest.raises(TypeError):
        _ = mailer.outbox


async def test_a_callable_backend_receives_composed_mail() -> None:
    sent: list[Mail] = []

    async def deliver(mail: Mail) -> None:
        sent.append(mail)

    mailer = Mailer(deliver, sender="Team <team@example.com>", backend_name="callable")
    await mailer.send(mailer.compose(to="bob@example.com", subject="S", text="T", kind="k"))
    assert sent == [
        Mail(
            to="bob@example.com", subject="S", text="T", sender="Team <team@example.com>", kind="k"
        )
    ]


def test_backend_choice_follows_the_settings() -> None:
    assert isinstance(build_mailer(settings()).backend, ConsoleBackend)
    smtp = build_mailer(
        settings(email_backend="smtp", smtp_host="mail.example", smtp_port=465, smtp_tls="tls")
    ).backend
    assert isinstance(smtp, SmtpBackend)
    assert (smtp.host, smtp.port, smtp.tls) == ("mail.example", 465, "tls")
    production = settings(
        environment="production",
        database_url="postgresql://app@db/app",
        secret_key="s" * 20 + "0123456789abcdefghijkl",
        refresh_token_secret="r" * 20 + "0123456789abcdefghijkl",
    )
    assert build_mailer(production).backend is None  # never prints reset links in production


def test_mail_settings_are_checked_one_sentence_each() -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - pydantic's ValidationError
        settings(
            environment="production",
            database_url="postgresql://app@db/app",
            secret_key="s" * 20 + "0123456789abcdefghijkl",
            refresh_token_secret="r" * 20 + "0123456789abcdefghijkl",
            email_backend="console",
            email_from="nobody",
            public_url="app.example",
            smtp_username="app",
        )
    assert settings_problems(caught.value) == [
        "STARTERKIT_PUBLIC_URL must be a base URL such as https://app.example, without ? or #.",
        "STARTERKIT_EMAIL_FROM must be an address such as noreply@example.com or Name <a@b.c>.",
        "STARTERKIT_SMTP_PASSWORD is missing while SMTP_USERNAME is set.",
        "STARTERKIT_EMAIL_BACKEND is console, which production refuses because it writes "
        "password-reset links into the log; use smtp or callable.",
    ]
    assert settings(public_url="https://app.example/").public_url == "https://app.example"


async def test_background_jobs_log_failures_and_are_cancelled_after_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = BackgroundJobs()
    finished: list[str] = []

    async def fails() -> None:
        raise RuntimeError("mail server on fire")

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.append("quick")

    async def stuck() -> None:
        await asyncio.Event().wait()

    jobs.spawn(fails(), name="failing job")
    jobs.spawn(quick(), name="quick job")
    stuck_task = jobs.spawn(stuck(), name="stuck job")
    await jobs.drain(grace_seconds=0.2)
    assert finished == ["quick"]
    assert stuck_task.cancelled()
    assert jobs.pending == 0
    assert "background job 'failing job' failed" in caplog.text
    assert "mail server on fire" in caplog.text
    assert "cancelling 1 background jobs" in caplog.text
