"""The documentation site builds, its generated references are complete, and its examples work.

- ``mkdocs build --strict`` succeeds (skipped when the docs extra is not installed).
- The configuration reference lists every ``Settings`` field with its environment variable.
- Every ```` ```python ```` block in ``docs/`` runs, each in a fresh interpreter, in an empty
  temporary directory, with no ``STARTERKIT_*`` variable set. A block that imports pytest is
  run by pytest. A block fenced as ```` ```{.python .no-run} ```` is only shown, and a block
  that includes a file (``--8<--``) shows an example that ``test_examples.py`` runs.
- Every ``starterkit …`` command shown in ``docs/`` exists, with the options it is shown with.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import typer.main

from starterkit.cli import app as cli_app
from starterkit.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})\s*(?P<info>.*)$")
INLINE_COMMAND = re.compile(r"`((?:python -m )?starterkit(?: [^`]*)?)`")
SHELL_LANGUAGES = {"console", "shell", "bash", "sh"}
EXAMPLE_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block of a documentation page."""

    page: Path
    line: int
    language: str
    classes: tuple[str, ...]
    text: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"


def code_blocks(page: Path) -> list[CodeBlock]:
    """The fenced code blocks of ``page``, with the language and classes of each."""
    blocks: list[CodeBlock] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        if info.startswith("{"):
            classes = tuple(re.findall(r"\.([\w-]+)", info))
            language = classes[0] if classes else ""
        else:
            language, classes = (info.split() or [""])[0], ()
        start = index + 1
        index = start
        while index < len(lines):
            closing = lines[index].strip()
            if closing.startswith(fence) and not closing.strip(fence[0]):
                break
            index += 1
        text = "\n".join(lines[start:index]) + "\n"
        blocks.append(CodeBlock(page, start, language.lower(), classes, text))
        index += 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in code_blocks(page)]
RUNNABLE = [
    block
    for block in ALL_BLOCKS
    if block.language == "python" and "no-run" not in block.classes and "--8<--" not in block.text
]


def without_starterkit_environment(**extra: str) -> dict[str, str]:
    """The current environment minus every STARTERKIT_* variable, plus ``extra``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STARTERKIT_")}
    environment.update(extra)
    return environment


def load_hook(name: str) -> ModuleType:
    """Import ``docs/hooks/<name>.py`` the way MkDocs does: from its file."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    path = DOCS / "hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_hooks_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the build ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built with ``mkdocs build --strict`` into a temporary directory."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(
            module, reason="the docs extra is not installed: pip install -e .[docs]"
        )
    output = tmp_path_factory.mktemp("site")
    # Not --quiet: it hides the warnings from --strict, which then lets them pass.
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(output)]
    build = subprocess.run(
        command,
        cwd=ROOT,
        env=without_starterkit_environment(NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return output


@pytest.mark.slow
def test_site_builds_strictly_with_every_page(site: Path) -> None:
    for page in PAGES:
        relative = page.relative_to(DOCS).with_suffix("")
        built = site / ("index.html" if relative.name == "index" else relative / "index.html")
        assert built.is_file(), f"{page.name} was not built"
    # The API reference was rendered by mkdocstrings, not left as a ::: directive.
    api = (site / "api" / "starterkit" / "index.html").read_text(encoding="utf-8")
    assert ":::" not in api
    assert "require_user" in api
    # The auth design page has its sequence diagram as a Mermaid block.
    assert '<pre class="mermaid">' in (site / "auth" / "index.html").read_text(encoding="utf-8")


# --- the generated references ------------------------------------------------------------


def table_rows(html: str) -> list[str]:
    return re.findall(r"<tr>(.*?)</tr>", html, flags=re.DOTALL)


def cells(row: str) -> list[str]:
    texts = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.DOTALL)
    return [re.sub(r"<[^>]+>", "", text).strip() for text in texts]


@pytest.mark.slow
def test_configuration_reference_lists_every_setting(site: Path) -> None:
    html = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    rows: dict[str, list[str]] = {}
    for row in table_rows(html):
        anchor = re.search(r'id="(starterkit_[a-z0-9_]+)"', row)
        if anchor:
            rows[anchor.group(1)] = cells(row)
    assert len(rows) == len(Settings.model_fields)
    for field in Settings.model_fields:
        variable = env_name(field)
        assert variable.lower() in rows, f"{variable} is missing from the configuration reference"
        name, kind, default, description = rows[variable.lower()]
        assert name == variable
        assert kind
        assert default
        assert len(description) > 10, f"{variable} has no real description"


def test_settings_table_matches_the_fields() -> None:
    hook = load_hook("settings_reference")
    table: str = hook.settings_reference()
    rows = [line for line in table.splitlines() if line.startswith("| <a id=")]
    assert [re.findall(r"`(STARTERKIT_\w+)`", row)[0] for row in rows] == [
        env_name(field) for field in Settings.model_fields
    ]
    [port_row] = [row for row in rows if "`STARTERKIT_DATABASE_POOL_SIZE`" in row]
    assert "| integer | `5` |" in port_row
    assert "Allowed: 1..1000." in port_row
    [secret_row] = [row for row in rows if "`STARTERKIT_SECRET_KEY`" in row]
    assert "secret string, optional | *unset*" in secret_row


def test_reference_hooks_refuse_a_page_without_their_marker() -> None:
    exceptions = pytest.importorskip("mkdocs.exceptions", reason="the docs extra is not installed")

    for name, page_name in (
        ("settings_reference", "configuration.md"),
        ("cli_reference", "cli.md"),
    ):
        hook = load_hook(name)
        page: Any = SimpleNamespace(file=SimpleNamespace(src_uri=page_name))
        other: Any = SimpleNamespace(file=SimpleNamespace(src_uri="index.md"))
        assert hook.on_page_markdown("no marker", page=other, config=None, files=None) == (
            "no marker"
        )
        with pytest.raises(exceptions.PluginError):
            hook.on_page_markdown("the marker is gone", page=page, config=None, files=None)


@pytest.mark.slow
def test_cli_reference_documents_every_command_and_option(site: Path) -> None:
    html = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for path, command in all_commands():
        assert f">{' '.join(path)}<" in html, f"{' '.join(path)} is not documented"
        for param in command.params:
            for opt in (*param.opts, *param.secondary_opts):
                name = opt.upper() if param.param_type_name == "argument" else opt
                assert f"<code>{name}</code>" in html, f"{' '.join(path)} {name}"


# --- the examples ------------------------------------------------------------------------


def test_the_docs_have_runnable_examples() -> None:
    assert len(RUNNABLE) >= 10, [block.name for block in RUNNABLE]
    every_page = {block.page.name for block in RUNNABLE}
    assert {"auth.md", "configuration.md", "library.md", "getting-started.md"} <= every_page


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[block.name for block in RUNNABLE])
def test_python_example_runs(block: CodeBlock, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if re.search(r"^import pytest$", block.text, flags=re.MULTILINE):
        (work / "test_example.py").write_text(block.text, encoding="utf-8")
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command.append("test_example.py")
    else:
        (work / "example.py").write_text(block.text, encoding="utf-8")
        command = [sys.executable, "example.py"]
    result = subprocess.run(
        command,
        cwd=work,
        env=without_starterkit_environment(TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block.name} failed:\n{block.text}\n{result.stdout}\n{result.stderr}"
    )


# --- the commands ------------------------------------------------------------------------


def all_commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the CLI with its full name, e.g. ``("starterkit", "migrate", "check")``."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found.append((path, command))
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(cli_app), ("starterkit",))
    return found


def shell_commands(block: CodeBlock) -> list[tuple[int, str]]:
    """The ``$ `` lines of a shell session with their line numbers, continuations joined."""
    commands: list[tuple[int, str]] = []
    pending, first_line = "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if pending:
            pending += " " + line.strip()
        elif line.startswith("$ "):
            pending, first_line = line[2:].strip(), block.line + offset + 1
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append((first_line, pending))
        pending = ""
    return commands


def starterkit_invocations() -> list[tuple[str, list[str]]]:
    """Every ``starterkit …`` shown in a shell session or inline code, as words after it."""
    invocations: list[tuple[str, list[str]]] = []
    for block in ALL_BLOCKS:
        if block.language not in SHELL_LANGUAGES:
            continue
        for line, command in shell_commands(block):
            for segment in re.split(r"&&|\|\||[|;]", command):
                words = shlex.split(segment, comments=True)
                if words[:3] == ["python", "-m", "starterkit"]:
                    words = words[2:]
                if words[:1] == ["starterkit"]:
                    invocations.append((f"{block.page.relative_to(DOCS)}:{line}", words[1:]))
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in INLINE_COMMAND.finditer(text):
            words = match.group(1).split()
            if words[0] == "python":
                words = words[2:]
            line = text.count("\n", 0, match.start()) + 1
            invocations.append((f"{page.relative_to(DOCS)}:{line}", words[1:]))
    return invocations


def check_invocation(words: list[str]) -> None:
    """Fail unless ``starterkit <words>`` names real commands and options."""
    command: Any = typer.main.get_command(cli_app)
    path = ["starterkit"]
    remaining = list(words)
    while remaining:
        word = remaining.pop(0)
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            params = {opt: param for param in command.params for opt in param.opts}
            flags = {opt for param in command.params for opt in param.secondary_opts}
            assert option in {*params, *flags, "--help"}, f"{' '.join(path)} has no {option}"
            param = params.get(option)
            takes_value = param is not None and not getattr(param, "is_flag", False)
            if takes_value and "=" not in word and remaining:
                remaining.pop(0)
            continue
        subcommands = getattr(command, "commands", None) or {}
        if subcommands and not any(p.param_type_name == "argument" for p in command.params):
            assert word in subcommands, f"{' '.join(path)} has no command {word!r}"
            command = subcommands[word]
            path.append(word)


STARTERKIT_INVOCATIONS = starterkit_invocations()


def test_the_docs_show_starterkit_commands() -> None:
    shown = {tuple(words[:1]) for _, words in STARTERKIT_INVOCATIONS}
    expected = {("serve",), ("migrate",), ("genkey",), ("new-user",), ("check",), ("--version",)}
    assert expected <= shown


@pytest.mark.parametrize(
    ("where", "words"),
    STARTERKIT_INVOCATIONS,
    ids=[
        f"{where}:starterkit {' '.join(words)}".strip() for where, words in STARTERKIT_INVOCATIONS
    ],
)
def test_starterkit_command_shown_in_the_docs_exists(where: str, words: list[str]) -> None:
    check_invocation(words)


@pytest.mark.parametrize(
    "words",
    [["serve", "--workerz", "2"], ["migrate", "upgrades"], ["create-user", "a@example.com"]],
)
def test_a_wrong_command_is_caught(words: list[str]) -> None:
    with pytest.raises(AssertionError):
        check_invocation(words)
