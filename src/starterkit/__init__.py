"""starterkit: accounts, JWT auth, rate limiting and caching for FastAPI.

The public names are imported lazily, so ``starterkit --help`` does not pay for FastAPI and
SQLAlchemy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from starterkit._version import __version__

if TYPE_CHECKING:
    from starterkit.app import StarterKit, create_app
    from starterkit.db.base import Base
    from starterkit.db.models import Item, User
    from starterkit.settings import Settings

__all__ = ["Base", "Item", "Settings", "StarterKit", "User", "__version__", "create_app"]

_LAZY = {
    "Base": "starterkit.db.base",
    "Item": "starterkit.db.models",
    "Settings": "starterkit.settings",
    "StarterKit": "starterkit.app",
    "User": "starterkit.db.models",
    "create_app": "starterkit.app",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'starterkit' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
