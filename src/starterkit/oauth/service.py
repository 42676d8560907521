"""Social-login rules: pending logins, which account an identity signs in to, linking and
unlinking, and the single-use exchange codes (SPEC §12).

Like every service here, these functions take the session first and never commit: the
routes own the unit of work.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from starterkit.audit import EventType, record_event
from starterkit.db.models import (
    UNUSABLE_PASSWORD_PREFIX,
    OAuthAccount,
    OAuthExchangeCode,
    OAuthFlow,
    User,
)
from starterkit.exceptions import InvalidRequest, NotFound
from starterkit.users.service import get_user_by_email, normalize_email

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from starterkit.audit import Origin
    from starterkit.oauth.clients import ExternalIdentity

logger = logging.getLogger("starterkit.oauth")

FLOW_LIFETIME = timedelta(minutes=10)
EXCHANGE_CODE_LIFETIME = timedelta(seconds=60)
LAST_WAY_TO_SIGN_IN = (
    "This is the account's only way to sign in: set a password (forgot-password) or link "
    "another provider first."
)


class LoginRefused(Exception):
    """A social login that must not sign anyone in; ``error`` goes back to the front end as
    ``?error=…``, ``user_id`` (when known) to the audit log."""

    def __init__(self, error: str, *, user_id: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class StartedFlow:
    """What the authorization request carries: ``state`` (returned by the provider),
    ``nonce`` (returned in the ID token) and the PKCE ``code_verifier`` (kept here)."""

    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The account an identity resolved to, and how."""

    user: User
    created: bool = False
    linked: bool = False


def digest(token: str) -> str:
    """The stored form of a state, binding or exchange code (random, so a plain hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def unusable_password() -> str:
    """A stored "hash" that no password matches, unique per account."""
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(24)


async def begin_flow(
    session: AsyncSession,
    *,
    provider: str,
    binding: str,
    redirect_to: str,
    now: datetime,
    link_user_id: int | None = None,
) -> StartedFlow:
    """Record a login (or, with ``link_user_id``, a link) about to go to ``provider``; flows
    left unfinished are deleted here once expired."""
    await session.execute(delete(OAuthFlow).where(OAuthFlow.expires_at <= now))
    started = StartedFlow(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        code_verifier=secrets.token_urlsafe(64),  # 86 characters, RFC 7636 allows 43 to 128
    )
    session.add(
        OAuthFlow(
            state_hash=digest(started.state),
            binding_hash=digest(binding),
            provider=provider,
            nonce=started.nonce,
            code_verifier=started.code_verifier,
            redirect_to=redirect_to,
            link_user_id=link_user_id,
            created_at=now,
            expires_at=now + FLOW_LIFETIME,
        )
    )
    await session.flush()
    return started


async def take_flow(session: AsyncSession, *, state: str, now: datetime) -> OAuthFlow | None:
    """The live flow of ``state``, deleted so that it serves one callback only (of two
    concurrent callbacks, one gets it)."""
    taken = await session.execute(
        delete(OAuthFlow)
        .where(OAuthFlow.state_hash == digest(state))
        .returning(OAuthFlow)
        .execution_options(synchronize_session=False)
    )
    flow = taken.scalar_one_or_none()
    return flow if flow is not None and flow.expires_at > now else None


def binding_matches(flow: OAuthFlow, binding: str | None) -> bool:
    """Whether the browser that finished the flow is the one that began it."""
    return binding is not None and secrets.compare_digest(flow.binding_hash, digest(binding))


async def sign_in(
    session: AsyncSession,
    *,
    provider: str,
    identity: ExternalIdentity,
    origin: Origin,
    now: datetime,
) -> SignedIn:
    """The account ``identity`` signs in to, by the three rules of SPEC §12.

    1. An identity already linked signs in to its account.
    2. Else an account with the same email is linked, only if the provider asserts that the
       email is verified (an unverified address must not take over someone's account).
    3. Else a new account without a password, verified as the provider says.

    Raises:
        LoginRefused: ``email_not_verified`` (rule 2 with an unverified email),
            ``email_required`` (no usable email for a new account), ``account_disabled``.
    """
    try:
        async with session.begin_nested():
            signed_in = await _resolve(
                session, provider=provider, identity=identity, origin=origin, now=now
            )
    except IntegrityError:
        # A concurrent first login of the same identity or email won; it is rule 1 or 2 now.
        signed_in = await _resolve(
            session, provider=provider, identity=identity, origin=origin, now=now
        )
    user = signed_in.user
    if not user.is_active:
        raise LoginRefused("account_disabled", user_id=user.id)
    record_event(session, event_type=EventType.OAUTH_LOGIN, origin=origin, now=now, user_id=user.id)
    return signed_in


async def _resolve(
    session: AsyncSession,
    *,
    provider: str,
    identity: ExternalIdentity,
    origin: Origin,
    now: datetime,
) -> SignedIn:
    account = await _identity(session, provider, identity.subject)
    if account is not None:
        account.last_login_at = now
        account.email = identity.email
        user = await session.get(User, account.user_id)
        if user is None:  # pragma: no cover - the foreign key cascades
            raise LoginRefused("account_disabled")
        return SignedIn(user)
    email = _usable_email(identity.email)
    if email is None:
        raise LoginRefused("email_required")
    existing = await get_user_by_email(session, email)
    if existing is not None:
        if not identity.email_verified:
            raise LoginRefused("email_not_verified", user_id=existing.id)
        await _link(session, existing, provider, identity, origin=origin, now=now)
        return SignedIn(existing, linked=True)
    user = User(
        email=email,
        hashed_password=unusable_password(),
        full_name=(identity.name or "")[:255] or None,
        is_verified=identity.email_verified,
    )
    session.add(user)
    await session.flush()
    record_event(
        session, event_type=EventType.USER_REGISTERED, origin=origin, now=now, user_id=user.id
    )
    await _link(session, user, provider, identity, origin=origin, now=now)
    logger.info("social login: new user %s from %s", user.id, provider)
    return SignedIn(user, created=True, linked=True)


async def link(
    session: AsyncSession,
    *,
    user: User,
    provider: str,
    identity: ExternalIdentity,
    origin: Origin,
    now: datetime,
) -> None:
    """Link ``identity`` to the signed-in ``user`` (a link flow's callback).

    Raises:
        LoginRefused: ``identity_in_use``, when it is linked to another account.
    """
    account = await _identity(session, provider, identity.subject)
    if account is not None:
        if account.user_id != user.id:
            raise LoginRefused("identity_in_use", user_id=user.id)
        account.email = identity.email
        return
    try:
        async with session.begin_nested():
            await _link(session, user, provider, identity, origin=origin, now=now)
    except IntegrityError:  # linked to someone else a moment ago
        raise LoginRefused("identity_in_use", user_id=user.id) from None


async def _link(
    session: AsyncSession,
    user: User,
    provider: str,
    identity: ExternalIdentity,
    *,
    origin: Origin,
    now: datetime,
) -> None:
    session.add(
        OAuthAccount(
            user_id=user.id,
            provider=provider,
            subject=identity.subject,
            email=identity.email,
            created_at=now,
            last_login_at=now,
        )
    )
    await session.flush()
    await _copy_providers(session, user, now=now)
    record_event(
        session, event_type=EventType.OAUTH_LINKED, origin=origin, now=now, user_id=user.id
    )


async def list_accounts(session: AsyncSession, *, user_id: int) -> list[OAuthAccount]:
    """The identities linked to an account, oldest first."""
    result = await session.scalars(
        select(OAuthAccount)
        .where(OAuthAccount.user_id == user_id)
        .order_by(OAuthAccount.created_at, OAuthAccount.id)
    )
    return list(result)


async def unlink(
    session: AsyncSession, *, user: User, account_id: int, origin: Origin, now: datetime
) -> None:
    """Remove one of ``user``'s linked identities.

    Raises:
        NotFound: no such identity of this user (someone else's answers the same).
        InvalidRequest: it is the account's last way to sign in (no password, no other link).
    """
    accounts = await list_accounts(session, user_id=user.id)
    account = next((each for each in accounts if each.id == account_id), None)
    if account is None:
        raise NotFound("No such linked account.")
    if not user.has_password and len(accounts) == 1:
        raise InvalidRequest(LAST_WAY_TO_SIGN_IN)
    await _remove(session, user, [account], origin=origin, now=now)


async def forget_unproven_links(
    session: AsyncSession, *, user: User, origin: Origin, now: datetime
) -> None:
    """Remove the identities of an account whose email was never verified, when its owner
    proves the mailbox (a password reset).

    Such a link may have been made by someone else at a provider that did not check the
    address (a "pre-account takeover"): the mailbox's owner gets the account alone.
    """
    accounts = await list_accounts(session, user_id=user.id)
    if not accounts:
        return
    await _remove(session, user, accounts, origin=origin, now=now)
    logger.info("password reset: unlinked %s identities of user %s", len(accounts), user.id)


async def _remove(
    session: AsyncSession,
    user: User,
    accounts: list[OAuthAccount],
    *,
    origin: Origin,
    now: datetime,
) -> None:
    for account in accounts:
        await session.delete(account)
    await session.flush()
    await _copy_providers(session, user, now=now)
    record_event(
        session, event_type=EventType.OAUTH_UNLINKED, origin=origin, now=now, user_id=user.id
    )


async def issue_exchange_code(
    session: AsyncSession, *, user: User, provider: str, now: datetime
) -> str:
    """A single-use code, valid for a minute, that the front end exchanges for a session."""
    await session.execute(delete(OAuthExchangeCode).where(OAuthExchangeCode.expires_at <= now))
    code = secrets.token_urlsafe(32)
    session.add(
        OAuthExchangeCode(
            code_hash=digest(code),
            user_id=user.id,
            provider=provider,
            created_at=now,
            expires_at=now + EXCHANGE_CODE_LIFETIME,
        )
    )
    await session.flush()
    return code


async def redeem_exchange_code(session: AsyncSession, *, code: str, now: datetime) -> User | None:
    """The user of an unused, unexpired exchange code, which is used up by this call (one
    conditional UPDATE: of two concurrent redemptions, one wins)."""
    claimed = await session.execute(
        update(OAuthExchangeCode)
        .where(
            OAuthExchangeCode.code_hash == digest(code),
            OAuthExchangeCode.used_at.is_(None),
            OAuthExchangeCode.expires_at > now,
        )
        .values(used_at=now)
        .returning(OAuthExchangeCode.user_id)
        .execution_options(synchronize_session=False)
    )
    user_id = claimed.scalar_one_or_none()
    return None if user_id is None else await session.get(User, user_id)


async def _identity(session: AsyncSession, provider: str, subject: str) -> OAuthAccount | None:
    return await session.scalar(
        select(OAuthAccount).where(
            OAuthAccount.provider == provider, OAuthAccount.subject == subject
        )
    )


async def _copy_providers(session: AsyncSession, user: User, *, now: datetime) -> None:
    """Keep ``users.oauth_providers`` equal to the providers of the user's identities."""
    providers = await session.scalars(
        select(OAuthAccount.provider).where(OAuthAccount.user_id == user.id).distinct()
    )
    user.oauth_providers = " ".join(sorted(providers))
    user.updated_at = now
    await session.flush()


def _usable_email(email: str | None) -> str | None:
    if not email:
        return None
    try:
        return normalize_email(email)
    except InvalidRequest:
        return None
