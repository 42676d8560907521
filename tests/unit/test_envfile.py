from __future__ import annotations

import stat
from pathlib import Path

from starterkit.envfile import read_env_file, write_env_values


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert write_env_values(path, {"A": "1", "B": "2"}) == ["A", "B"]
    assert mode(path) == 0o600
    assert read_env_file(path) == {"A": "1", "B": "2"}


def test_existing_values_and_other_lines_are_kept_unless_forced(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# comment\nexport A=old\nOTHER='x y'\nEMPTY=\n")
    path.chmod(0o644)
    assert write_env_values(path, {"A": "new", "EMPTY": "filled", "C": "3"}) == ["EMPTY", "C"]
    text = path.read_text()
    assert text.startswith("# comment\nexport A=old\nOTHER='x y'\n")
    assert read_env_file(path) == {"A": "old", "OTHER": "x y", "EMPTY": "filled", "C": "3"}
    assert mode(path) == 0o600

    assert write_env_values(path, {"A": "new"}, force=True) == ["A"]
    assert read_env_file(path)["A"] == "new"


def test_nothing_to_write_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o644)
    assert write_env_values(path, {"A": "2"}) == []
    assert mode(path) == 0o644
    assert read_env_file(tmp_path / "missing.env") == {}
