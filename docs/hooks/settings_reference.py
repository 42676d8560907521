"""MkDocs hook: the configuration reference, generated from ``Settings.model_fields``.

``docs/configuration.md`` holds the marker ``<!-- settings-reference -->``. At build time it is
replaced by a table with one row per field of :class:`starterkit.settings.Settings`: its
environment variable, type, default, allowed range and description. Nothing is copied by hand,
so the page cannot drift from the code; a field without a description fails the build.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from starterkit.settings import Settings, env_name

MARKER = "<!-- settings-reference -->"
PAGE = "configuration.md"

_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    SecretStr: "secret string",
}


def type_name(name: str, annotation: Any) -> str:
    """Describe a field's type in words (tables cannot hold ``|``)."""
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return f"{type_name(name, members[0])}, optional"
    if origin is list:
        [member] = get_args(annotation)
        return f"list of {type_name(name, member)}s"
    if annotation is str and name.endswith("_rate_limit"):
        return "rate limit"
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(field: FieldInfo) -> str:
    """The default as you would write it in an env file, or *unset*."""
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "*unset*"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f"`{value}`" if value else "*empty*"
    if isinstance(value, list):
        return "`[]`" if not value else "`" + ",".join(map(str, value)) + "`"
    return f"`{value}`"


def range_text(field: FieldInfo) -> str:
    """Bounds from ``Field(ge=…, le=…, min_length=…)`` in words, or an empty string."""
    low = high = ""
    length_low, length_high = "0", "∞"
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"≥ {item.ge}"
        elif isinstance(item, annotated_types.Gt):
            low = f"> {item.gt}"
        elif isinstance(item, annotated_types.Le):
            high = f"≤ {item.le}"
        elif isinstance(item, annotated_types.Lt):
            high = f"< {item.lt}"
        elif isinstance(item, annotated_types.MinLen):
            length_low = str(item.min_length)
        elif isinstance(item, annotated_types.MaxLen):
            length_high = str(item.max_length)
    if low.startswith("≥") and high.startswith("≤"):
        parts = [f"{low[2:]}..{high[2:]}"]
    else:
        parts = [part for part in (low, high) if part]
    if (length_low, length_high) != ("0", "∞"):
        parts.append(f"{length_low}..{length_high} characters")
    return ", ".join(parts)


def description_of(name: str, field: FieldInfo) -> str:
    """The field's description, from settings.py."""
    description = field.description
    if not description:
        raise PluginError(
            f"Settings.{name} has no description; add description=... to its Field() in "
            "src/starterkit/settings.py so the configuration reference can explain it."
        )
    return " ".join(description.split())


def settings_reference() -> str:
    """The Markdown table of every setting, in declaration order."""
    rows = [
        "| Variable | Type | Default | Description |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        variable = env_name(name)
        bounds = range_text(field)
        description = description_of(name, field)
        if bounds:
            description += f" Allowed: {bounds}."
        anchor = f'<a id="{variable.lower()}"></a>'
        rows.append(
            f"| {anchor}`{variable}` | {type_name(name, field.annotation)} "
            f"| {default_text(field)} | {description.replace('|', '&#124;')} |"
        )
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace the marker on the configuration page with the generated table."""
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{PAGE} lost its {MARKER} marker; the settings table goes there.")
    return markdown.replace(MARKER, settings_reference())
