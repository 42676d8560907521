"""The small HTML pages behind mailed links: ``/reset-password`` and ``/verify-email``.

A mail's link leads to ``{PUBLIC_URL}/reset-password?token=…`` or ``/verify-email?token=…``.
Without a front end of your own, these pages finish the flow: plain HTML forms that work
without JavaScript. Opening a link changes nothing (mail scanners open links too); the form's
POST does, through the same services, limits, audit events and hooks as
``/auth/reset-password`` and ``/auth/verify``. ``PAGES_ENABLED=false`` leaves the paths to a
front end that serves them.

No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime.
"""

import base64
import hashlib
import html
from collections.abc import Sequence
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncSession

from starterkit.audit import Origin
from starterkit.exceptions import InvalidAccountToken, InvalidPassword
from starterkit.lifecycle import service
from starterkit.lifecycle.mail import RESET_PASSWORD_PATH, VERIFY_EMAIL_PATH
from starterkit.runtime import Runtime

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5}label,input,button{display:block;width:100%;box-sizing:border-box}"
    "input{margin:.25rem 0 1rem;padding:.5rem}button{padding:.6rem}.error{color:#b00020}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
# The page may load nothing, run no script, and post only to itself.
_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_BAD_LINK = "This link is invalid, has expired or was already used. Ask for a new one."
_MAX_FORM_BYTES = 8192


def build_pages_router(kit: Runtime, *, tags: Sequence[str] = ("pages",)) -> APIRouter:
    """The reset-password and verify-email pages of ``kit``; mount it at the root."""
    router = APIRouter(tags=list(tags), include_in_schema=False)
    Session = Annotated[AsyncSession, Depends(kit.db_session)]
    RequestOrigin = Annotated[Origin, Depends(kit.request_origin)]
    redeem_limit = Depends(
        kit.limit_per_client("redeem-token", kit.settings.auth_redeem_token_rate_limit)
    )

    @router.get(RESET_PASSWORD_PATH)
    async def reset_password_form(token: str = "") -> HTMLResponse:
        return _reset_form(token)

    @router.post(RESET_PASSWORD_PATH, dependencies=[redeem_limit])
    async def reset_password(
        request: Request, origin: RequestOrigin, session: Session
    ) -> HTMLResponse:
        form = await _form_of(request)
        token, password = form.get("token", ""), form.get("new_password", "")
        if password != form.get("confirm_password", ""):
            return _reset_form(token, error="The two passwords differ.", status_code=422)
        try:
            user = await service.reset_password(
                session,
                token=token,
                new_password=password,
                account_tokens=kit.account_tokens,
                hasher=kit.password_hasher,
                password_min_length=kit.settings.password_min_length,
                origin=origin,
                now=kit.clock(),
            )
        except InvalidPassword as error:
            return _reset_form(token, error=error.detail, status_code=422)
        except InvalidAccountToken:
            return _page("Reset your password", f"<p class=error>{_BAD_LINK}</p>", 400)
        await session.commit()
        await kit.hooks.after_reset_password(user, request)
        return _page(
            "Password changed",
            "<p>Your password was changed, and every session of your account has ended. "
            "Sign in with the new password.</p>",
        )

    @router.get(VERIFY_EMAIL_PATH)
    async def verify_email_form(token: str = "") -> HTMLResponse:
        body = (
            "<p>Confirm that this email address is yours.</p>"
            f'<form method="post"><input type="hidden" name="token" value="{_attr(token)}">'
            "<button type=submit>Confirm my email address</button></form>"
        )
        return _page("Confirm your email address", body)

    @router.post(VERIFY_EMAIL_PATH, dependencies=[redeem_limit])
    async def verify_email(
        request: Request, origin: RequestOrigin, session: Session
    ) -> HTMLResponse:
        form = await _form_of(request)
        try:
            user = await service.verify_email(
                session,
                token=form.get("token", ""),
                account_tokens=kit.account_tokens,
                origin=origin,
                now=kit.clock(),
            )
        except InvalidAccountToken:
            return _page("Confirm your email address", f"<p class=error>{_BAD_LINK}</p>", 400)
        await session.commit()
        await kit.hooks.after_verify(user, request)
        return _page("Email address confirmed", "<p>Thank you: your address is confirmed.</p>")

    return router


def _reset_form(token: str, *, error: str | None = None, status_code: int = 200) -> HTMLResponse:
    problem = f"<p class=error>{html.escape(error)}</p>" if error else ""
    body = (
        f"{problem}<form method=post>"
        f'<input type=hidden name=token value="{_attr(token)}">'
        "<label for=new_password>New password</label>"
        "<input id=new_password name=new_password type=password autocomplete=new-password "
        "required>"
        "<label for=confirm_password>The same again</label>"
        "<input id=confirm_password name=confirm_password type=password "
        "autocomplete=new-password required>"
        "<button type=submit>Set the new password</button></form>"
    )
    return _page("Reset your password", body, status_code)


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<meta name=referrer content=no-referrer><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    headers = {"Content-Security-Policy": _POLICY, "Cache-Control": "no-store"}
    return HTMLResponse(document, status_code=status_code, headers=headers)


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


async def _form_of(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST; anything else or anything undecodable counts as empty."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return {}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return {}
