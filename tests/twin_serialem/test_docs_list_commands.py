"""docs/serialem-scripts.md documents every command the module implements."""

from __future__ import annotations

from pathlib import Path

from tomopilot.instrument.twin_serialem import COMMANDS, coverage

DOC = Path(__file__).resolve().parents[2] / "docs" / "serialem-scripts.md"


def test_every_command_is_in_the_script_authors_page() -> None:
    text = DOC.read_text()
    missing = [name for name in COMMANDS if f"| `{name}" not in text]
    assert missing == []
    assert "the 157\ncommands of the list" in text and str(coverage()).startswith("157/157")
