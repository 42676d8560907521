"""``starterkit check``: a table of what works and what does not; exit 1 on any failure.

The checks themselves are in :mod:`starterkit.cli.checks`, imported when the command runs.
"""

from __future__ import annotations

from starterkit._version import __version__


def check() -> None:
    """Check settings, database, migrations and Redis; exit 1 if anything fails."""
    import typer  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from starterkit.cli.checks import run_checks  # noqa: PLC0415

    results = run_checks()
    table = Table(title=f"starterkit {__version__}")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    for result in results:
        style = {"ok": "green", "warn": "bold yellow", "fail": "bold red", "skip": "yellow"}[
            result.status
        ]
        table.add_row(result.name, f"[{style}]{result.status}[/]", result.detail)
    Console(width=max(100, Console().width)).print(table)
    if any(result.status == "fail" for result in results):
        raise typer.Exit(1)
