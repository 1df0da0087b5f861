"""The README documents every option, so the docs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from launchguard._config import options_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
TABLE = README[README.index("| option | environment variable | default | meaning |") :]


def test_every_option_in_the_readme_table() -> None:
    """Each option appears in the README's configuration table with its variable."""
    for option, variable, _, _ in options_table():
        row = next((line for line in TABLE.splitlines() if line.startswith(f"| `{option}` |")), "")
        assert row, f"{option} is missing from the README's configuration table"
        if variable != "-":
            assert f"`{variable}`" in row
