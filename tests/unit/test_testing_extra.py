"""``starterkit.testing`` works from an install with the ``testing`` extra, and says so."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from starterkit import create_app
from starterkit.testing import app_client, throwaway_settings

pytestmark = pytest.mark.anyio


def test_the_testing_extra_declares_what_starterkit_testing_needs() -> None:
    requirements = importlib.metadata.requires("starterkit") or []
    testing = {
        re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        for requirement in requirements
        if re.search(r"""extra\s*==\s*["']testing["']""", requirement)
    }
    assert {"httpx", "pytest"} <= testing


async def test_app_client_without_httpx_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if it were not installed
    app = create_app(throwaway_settings(tmp_path))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'starterkit\[testing\]'"):
        async with app_client(app, migrate_database=False):
            pass  # pragma: no cover - never reached
