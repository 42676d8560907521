"""Domain errors raised by services. They know nothing about HTTP.

``starterkit.errors`` maps each class to a status code and error code in one place.
"""

from __future__ import annotations


class StarterKitError(Exception):
    """Base class of every error a starterkit service raises on purpose.

    ``error_code`` overrides the envelope's ``code`` that the status code would give.
    """

    default_detail = "The request could not be completed."
    error_code: str | None = None

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class InvalidRequest(StarterKitError):
    """The request is well-formed but cannot be honoured (400)."""

    default_detail = "The request is invalid."


class InvalidAccountToken(InvalidRequest):
    """A password-reset or verification token that is malformed, expired or already used.

    A 400, not a 401: these tokens are not credentials of a signed-in caller.
    """

    default_detail = "The link is invalid, has expired or was already used."


class AuthenticationFailed(StarterKitError):
    """Credentials or token missing, wrong, expired or revoked (401).

    ``user_id`` names the account a failed login was for, when it exists (for the audit
    log; it never reaches the client).
    """

    default_detail = "Could not validate credentials."

    def __init__(self, detail: str | None = None, *, user_id: int | None = None) -> None:
        super().__init__(detail)
        self.user_id = user_id


class InvalidToken(AuthenticationFailed):
    """A bearer or refresh token that is malformed, forged, expired or revoked."""

    default_detail = "The token is invalid or has expired."


class MFARequired(AuthenticationFailed):
    """The password was right, but the account has a second factor this login cannot take."""

    default_detail = (
        "This account has a second factor: log in with JSON at /auth/login, then send a code "
        "to /auth/login/mfa."
    )
    error_code = "mfa_required"


class RateLimited(StarterKitError):
    """Too many requests; ``headers`` carry Retry-After and the X-RateLimit-* values (429)."""

    default_detail = "Too many requests; try again later."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.headers = headers or {}


class RefreshTokenReused(InvalidToken):
    """A refresh token was presented again after use; its session has been revoked."""

    def __init__(self, *, user_id: int, session_id: int) -> None:
        super().__init__(user_id=user_id)
        self.user_id: int = user_id
        self.session_id = session_id


class PermissionDenied(StarterKitError):
    """Authenticated, but not allowed to do this (403)."""

    default_detail = "You do not have permission to do this."


class EmailNotVerified(PermissionDenied):
    """The password was right, but ALLOW_UNVERIFIED_LOGIN is off and the email is unverified."""

    default_detail = "Verify your email address before you log in."

    def __init__(self, detail: str | None = None, *, user_id: int) -> None:
        super().__init__(detail)
        self.user_id = user_id


class SecondFactorRequired(PermissionDenied):
    """The route needs a session that logged in with a second factor (403)."""

    default_detail = "This requires a login with a second factor."
    error_code = "mfa_required"


class ReauthenticationRequired(PermissionDenied):
    """The route needs a recent authentication: call /auth/reauthenticate first (403)."""

    default_detail = (
        "This requires a recent authentication: confirm your password or a code at "
        "/auth/reauthenticate, then try again with the new access token."
    )
    error_code = "reauthentication_required"


class CSRFFailed(PermissionDenied):
    """A cookie-authenticated request without the session's CSRF token, or from an origin the
    service does not trust (403)."""

    default_detail = "The CSRF check failed."
    error_code = "csrf_failed"


class ServiceUnavailable(StarterKitError):
    """The service cannot do this until an operator fixes something (503); ``detail`` is for
    the log, clients get the generic answer."""

    default_detail = "The service is not configured to do this."


class NotFound(StarterKitError):
    """The object does not exist, or is not the caller's to see (404)."""

    default_detail = "Not found."


class Conflict(StarterKitError):
    """The change clashes with existing state, e.g. a taken email (409)."""

    default_detail = "The request conflicts with existing data."


class EmailTaken(Conflict):
    """Another account already uses this email."""

    default_detail = "An account with this email already exists."


class InvalidPassword(StarterKitError):
    """A new password breaks the password rules; ``field`` names the offending input."""

    default_detail = "The password does not meet the password rules."

    def __init__(self, detail: str | None = None, *, field: str = "password") -> None:
        super().__init__(detail)
        self.field = field


class WrongPassword(InvalidRequest):
    """The current password given to confirm a change is not the account's password."""

    default_detail = "The current password is incorrect."
