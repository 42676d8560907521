"""The TOTP setup's QR code, as a page would show it, rendered by a real browser.

With STARTERKIT_TEST_WRITE_SCREENSHOTS=1 the test also writes the screenshot the MFA docs
page shows (docs/images/mfa-setup.png).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from starterkit.mfa.codes import provisioning_uri, qr_svg
from tests.browser.conftest import block_off_host

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.slow

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "mfa-setup.png"
# A fixed example secret, so the docs' picture does not change from run to run.
EXAMPLE_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def setup_page(svg: str, secret: str) -> str:
    """A page like a front end's: the QR code (inline SVG, as the API returns it), the secret."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Set up your authenticator app</title>
<style>
body {{ font-family: sans-serif; margin: 24px; width: 360px; }}
.qr svg {{ width: 200px; height: 200px; }}
code {{ font-size: 15px; word-break: break-all; }}
</style></head>
<body>
<h2>Set up your authenticator app</h2>
<p>Scan this code with Google Authenticator, 1Password, Aegis or any TOTP app.</p>
<div class="qr">{svg}</div>
<p>Or type this key by hand:<br><code>{html.escape(secret)}</code></p>
<p>Then enter the 6-digit code the app shows to finish.</p>
</body></html>"""


def test_the_setup_qr_code_renders_in_a_browser(browser: Browser) -> None:
    uri = provisioning_uri(EXAMPLE_SECRET, account="you@example.com", issuer="starterkit")
    page = browser.new_page(viewport={"width": 420, "height": 520})
    blocked: list[str] = []
    block_off_host(page, blocked)
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.set_content(setup_page(qr_svg(uri), EXAMPLE_SECRET))
    box = page.locator(".qr svg").bounding_box()
    assert box is not None
    assert box["width"] == box["height"] == 200
    title = page.locator(".qr svg title").text_content()
    assert title == "TOTP setup QR code"
    # Black modules on white: the rendered code has both colours.
    colours = page.evaluate(
        """() => {
            const svg = document.querySelector('.qr svg');
            const paths = [...svg.querySelectorAll('path')];
            return paths.map(p => p.getAttribute('fill') || p.getAttribute('stroke'));
        }"""
    )
    assert "#fff" in colours
    assert "#000" in colours
    assert blocked == []
    assert errors == []
    if os.environ.get("STARTERKIT_TEST_WRITE_SCREENSHOTS"):
        page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()
