"""The documents say what the code does: every refusal reason the server can send is in
the contract's table, every link between the documents leads somewhere, and the README
keeps exactly its two set-up commands."""

from __future__ import annotations

import re
from pathlib import Path

from spotex._core import reject_codes, status_codes

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_reason_is_in_the_contract() -> None:
    table = (ROOT / "docs" / "contract.md").read_text()
    listed = set(re.findall(r"^\| `([A-Z_]+)` \|", table, re.M))
    sent = set(reject_codes()) | {r for r, _ in status_codes()}
    assert sent <= listed, f"reasons missing from docs/contract.md: {sorted(sent - listed)}"


def test_links_between_documents_lead_somewhere() -> None:
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", doc.read_text()):
            if target.startswith("http"):
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_the_readme_keeps_its_two_set_up_commands() -> None:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in setup.splitlines()]
    assert [c for c in commands if c] == ["make demo", "make test"]
