"""MkDocs hook: the command-line reference, generated from the Typer app.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``. At build time it is replaced by one
section per command of ``starterkit.cli.app`` (walked through ``typer.main.get_command``), with
its usage line, help text and a table of its arguments and options. Adding, renaming or
removing a command or option changes this page with no edit to it.

Only attributes that click and Typer's own command classes share are read (``params``,
``commands``, ``opts``, ``help`` …), so the hook works across Typer versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

from starterkit.cli import app

MARKER = "<!-- cli-reference -->"
PAGE = "cli.md"
PROGRAM = "starterkit"

_TYPE_NAMES: dict[Any, str] = {str: "text", int: "integer", float: "number", Path: "path"}


def commands(command: Any, path: tuple[str, ...] = (PROGRAM,)) -> Iterator[tuple[str, Any]]:
    """Every visible command, depth first in registration order, with its full name."""
    yield " ".join(path), command
    for name, sub in (getattr(command, "commands", None) or {}).items():
        if not getattr(sub, "hidden", False):
            yield from commands(sub, (*path, name))


def is_argument(param: Any) -> bool:
    """True for a positional argument, False for an option."""
    return getattr(param, "param_type_name", "") == "argument"


def value_type(param: Any) -> str:
    """The kind of value a parameter takes, in words."""
    if getattr(param, "is_flag", False):
        return "flag"
    descriptor = getattr(param, "type_descriptor", None)  # Typer ≥ 0.25
    annotation = getattr(descriptor, "annotation", None)
    if annotation in _TYPE_NAMES:
        return _TYPE_NAMES[annotation]
    click_type = getattr(param, "type", None)  # click
    return str(getattr(click_type, "name", "text")).lower()


def bounds(param: Any) -> str:
    """``1..65535``, ``≥ 1`` or an empty string."""
    source = param if hasattr(param, "min") else getattr(param, "type", None)
    low, high = getattr(source, "min", None), getattr(source, "max", None)
    if low is not None and high is not None:
        return f"{low}..{high}"
    if low is not None:
        return f"≥ {low}"
    if high is not None:
        return f"≤ {high}"
    return ""


def default_text(param: Any) -> str:
    """The default in words; required parameters say so."""
    if getattr(param, "required", False):
        return "required"
    default = getattr(param, "default", None)
    if getattr(param, "is_flag", False):
        return "on" if default else "off"
    if default is None or callable(default):
        return "none"
    return f"`{default}`"


def names(param: Any) -> str:
    """``--reload`` / ``--no-reload`` for options, ``EMAIL`` for arguments."""
    if is_argument(param):
        return f"`{str(param.name).upper()}`"
    return " / ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))


def usage(name: str, command: Any) -> str:
    """A usage line such as ``starterkit new-user [OPTIONS] EMAIL``."""
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    words = [name]
    if any(not is_argument(p) for p in params) or not params:
        words.append("[OPTIONS]")
    for param in params:
        if is_argument(param):
            word = str(param.name).upper()
            words.append(word if param.required else f"[{word}]")
    if getattr(command, "commands", None):
        words.append("COMMAND [ARGS]...")
    return " ".join(words)


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "&#124;")


def section(name: str, command: Any) -> str:
    """The Markdown section of one command."""
    level = "##" if name.count(" ") <= 1 else "###"  # subcommands of a group go one deeper
    help_text = (getattr(command, "help", None) or "").strip()
    if not help_text:
        raise PluginError(f"`{name}` has no help text; give its function a docstring.")
    lines = [f"{level} {name}", "", "```text", usage(name, command), "```", "", help_text, ""]
    if getattr(command, "invoke_without_command", False) and getattr(command, "commands", None):
        lines += ["It also runs on its own, without a subcommand.", ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| Argument or option | Value | Default | Description |", "|---|---|---|---|"]
        for param in params:
            kind = value_type(param)
            if limits := bounds(param):
                kind += f" ({limits})"
            description = cell(getattr(param, "help", None) or "")
            lines.append(f"| {names(param)} | {kind} | {default_text(param)} | {description} |")
        lines.append("")
    subcommands = getattr(command, "commands", None) or {}
    if subcommands:
        listed = ", ".join(f"`{sub}`" for sub in subcommands)
        lines += [f"Commands: {listed}.", ""]
    return "\n".join(lines)


def cli_reference() -> str:
    """The Markdown reference of every command."""
    root = typer.main.get_command(app)
    return "\n".join(section(name, command) for name, command in commands(root))


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the marker on the CLI page with the generated reference."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} lost its {MARKER} marker; the CLI reference goes there.")
    return markdown.replace(MARKER, cli_reference())
