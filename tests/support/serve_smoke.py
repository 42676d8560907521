"""Start ``starterkit serve`` from an installed wheel, check it answers, stop it.

Usage: ``python serve_smoke.py PATH/TO/starterkit [SERVE OPTIONS...]``, e.g. ``--app
shop.app:create_app`` for a project made by ``starterkit new``. Standard library only: it runs
in a venv that holds nothing but the wheel.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request


def main(executable: str, *options: str) -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([executable, "serve", "--port", str(port), *options])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/v1/health", timeout=2) as response:  # noqa: S310 - loopback
                    health = json.load(response)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print("serve smoke: server never became healthy", file=sys.stderr)  # noqa: T201
                    return 1
                time.sleep(0.2)
        with urllib.request.urlopen(f"{base}/docs", timeout=2) as response:  # noqa: S310 - loopback
            docs_ok = response.status == 200
        print(f"serve smoke: health={health} docs={docs_ok}")  # noqa: T201
        return 0 if health.get("database") == "up" and docs_ok else 1
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], *sys.argv[2:]))
