"""Griffe extension: render the reStructuredText habits of starterkit's docstrings as Markdown.

The docstrings are Google style, but they also use two reST conventions that mkdocstrings
would print literally: cross-reference roles (``:class:`StarterKit```, ``:meth:`lifespan```)
and literal blocks introduced by ``::``. This extension rewrites both, on the loaded objects
only; the source is untouched. mkdocs.yml loads it for the mkdocstrings Python handler.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj|const):`~?\.?([^`]+)`")


def roles_to_code(text: str) -> str:
    """``:class:`StarterKit``` becomes ``StarterKit`` in backticks."""
    return _ROLE.sub(lambda match: f"`{match.group(1)}`", text)


def literal_blocks_to_fences(text: str) -> str:
    """Turn ``para::`` followed by an indented block into ``para:`` and a fenced code block."""
    lines = text.splitlines()
    result: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.rstrip().endswith("::"):
            result.append(line)
            index += 1
            continue
        stripped = line.rstrip()[:-2].rstrip()
        if stripped:
            result.append(f"{stripped}:")
        base = len(line) - len(line.lstrip())
        index += 1
        block: list[str] = []
        while index < len(lines):
            current = lines[index]
            indented = len(current) - len(current.lstrip()) > base
            if current.strip() and not indented:
                break
            block.append(current)
            index += 1
        while block and not block[-1].strip():
            block.pop()
        code = textwrap.dedent("\n".join(block)).strip("\n")
        result += ["", "```python", *code.splitlines(), "```", ""]
    return "\n".join(result)


class RestructuredTextToMarkdown(griffe.Extension):
    """Rewrite reST roles and literal blocks in every docstring of the loaded package."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Fix the docstring of each loaded object."""
        if obj.docstring is not None:
            obj.docstring.value = literal_blocks_to_fences(roles_to_code(obj.docstring.value))
