"""Database layer: declarative base, models, engine and session factory."""

from starterkit.db.base import Base, utcnow
from starterkit.db.models import AuthEvent, AuthSession, Item, RefreshToken, User

__all__ = ["AuthEvent", "AuthSession", "Base", "Item", "RefreshToken", "User", "utcnow"]
