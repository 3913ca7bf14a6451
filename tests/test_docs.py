"""The documents say what the code does: every refusal reason the server can send is in
the contract's table, every link between the documents leads somewhere, and the README
keeps exactly its two set-up commands."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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


def test_the_readme_names_every_extra() -> None:
    """Each extra users install (all but the test tools) is named the way pip takes it."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    assert {"charts", "batch", "bench", "export", "cluster", "auction"} <= set(extras)
    missing = [e for e in extras if e != "test" and f"`spotex[{e}]`" not in readme]
    assert not missing, f"README.md does not name the extras {missing}"


def _block(doc: Path, after: str, lang: str) -> str:
    """The first ``lang`` code block of ``doc`` after the text ``after``."""
    text = doc.read_text()
    found = re.search(rf"```{lang}\n(.*?)```", text[text.index(after):], re.S)
    assert found, f"{doc.name}: no {lang} block after {after!r}"
    return found.group(1)


def _shell_lines(block: str) -> list[str]:
    """A shell block's commands, continuation lines joined, `spotex serve` left out (the
    test's server stands in for it)."""
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith(("#", "spotex serve"))]


def test_the_readme_and_guide_examples_run_in_order_on_one_server(tmp_path: Path) -> None:
    """What a newcomer does: the README's first look, its resale walk-through, then the
    trading guide's SDK tour and its CLI tour, as written, one after the other on one
    server (the README's resale server, with its fee)."""
    from conftest import on_thread
    from test_resale import walkthrough

    from spotex.server.service import Server

    readme, guide = ROOT / "README.md", ROOT / "docs" / "trading.md"
    bin_dir = str(Path(sys.executable).parent)
    # the operator token the documents use
    with on_thread(lambda: Server.start("127.0.0.1:0", tmp_path / "data", "op-secret",
                                        resale_fee_bps=50),
                   lambda s: s.stop(0.5)) as (server, _):
        target = f"127.0.0.1:{server.port}"
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
               "SPOTEX_SERVER": target, "SPOTEX_OPERATOR_TOKEN": "op-secret",
               "XDG_CONFIG_HOME": str(tmp_path / "config"), "SPOTEX_TOKEN": "",
               "COLUMNS": "80"}

        def sh(line: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(["bash", "-c", line], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
            return done

        # the README's first look, then its resale walk-through
        first_look = _shell_lines(_block(readme, "A first look", "sh"))
        assert len(first_look) == 2
        listed = [sh(line) for line in first_look][-1].stdout
        assert listed.count("H100-SXM/us-east/") == 3, listed
        script, printed = walkthrough()
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout == printed

        # the trading guide's SDK tour, on the same server
        tour = _block(guide, "List products and make accounts", "python")
        out = subprocess.run([sys.executable, "-c", tour.replace("127.0.0.1:50551", target)],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "snapshot" in out.stdout

        # and its CLI tour: tokens taken from what create-account printed
        tokens: dict[str, str] = {}
        ids: dict[str, str] = {}
        for line in _shell_lines(_block(guide, "The same from a terminal", "sh")):
            line = line.replace("127.0.0.1:50551", target)
            for who, name in (("seller", "neocloud"), ("buyer", "startup")):
                line = line.replace(f"<{who} token>", tokens.get(name, ""))
                line = line.replace(f"<{who} id>", ids.get(name, ""))
            assign = re.fullmatch(r"(?:export )?(\w+)=(.+?)(?:\s+#.*)?", line)
            if assign:
                env[assign.group(1)] = sh(f"echo {assign.group(2)}").stdout.strip()
                continue
            if line.startswith("spotex watch"):
                watching = subprocess.Popen(["bash", "-c", f"exec {line}"], env=env,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True)
                time.sleep(2.0)  # no timing asserted: Ctrl-C may come before the first view
                watching.send_signal(signal.SIGINT)
                shown, errors = watching.communicate(timeout=30)
                assert watching.returncode == 0 and "Aborted" not in errors, errors
                continue
            done = sh(line)
            made = re.search(r"create-account (\w+).*", line)
            if made:
                tokens[made.group(1)] = re.search(r"token (\S+)", done.stdout).group(1)  # type: ignore[union-attr]
                ids[made.group(1)] = re.search(r"account (\d+)", done.stdout).group(1)  # type: ignore[union-attr]
            if line.startswith("spotex order buy"):
                assert "filled" in done.stdout, done.stdout
            if line.startswith("spotex allocations"):
                assert "n0[0,1,2,3,4,5,6,7]" in done.stdout, done.stdout
            if line.startswith("spotex balance"):
                assert "$83.20" in done.stdout, done.stdout


ROOMS = ("client", "server", "cluster", "tools", "cli")


def test_every_documented_public_name_imports_from_its_documented_place() -> None:
    import importlib

    # the face, the SDK and the command: every name each exports
    for place in ("spotex", "spotex.client", "spotex.cli"):
        module = importlib.import_module(place)
        for name in module.__all__:
            assert getattr(module, name, None) is not None, f"{place}.{name}"
    # every import the README and the guides show, as they show it
    shown = []
    for doc in DOCS:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S):
            shown += [line.strip() for line in block.splitlines()
                      if re.fullmatch(r"from spotex[\w.]* import [\w, ]+|import spotex[\w.]*",
                                      line.strip())]
    assert len(shown) >= 3
    for line in shown:
        exec(line, {})  # noqa: S102 - the documents' own import lines


def test_the_layout_in_the_readme_and_the_architecture_page_matches_the_tree() -> None:
    package = ROOT / "python" / "spotex"
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    for room in ROOMS:
        modules = {p.stem for p in (package / room).glob("*.py")} - {"__init__", "__main__"}
        row = next(line for line in architecture.splitlines()
                   if line.startswith(f"| `python/spotex/{room}/`"))
        assert {m for m in modules if f"`{m}`" not in row} == set(), room
        # the README's entry for the room: up to the next room or top-level folder
        block = layout.split(f"\n  {room}/", 1)[1]
        block = block[:re.search(r"\n  [a-z]+/ |\n[a-z]", block).start()]  # type: ignore[union-attr]
        assert {m for m in modules if not re.search(rf"\b{m}\b", block)} == set(), room
    # the Rust rooms: every module of the two big types and of the binding is named
    for folder, row_start in (("rust_core/src/engine", "| `rust_core/`"),
                              ("rust_exchange/src/exchange", "| `rust_exchange/`"),
                              ("bindings/python/src", "| `bindings/python/src/`")):
        row = next(line for line in architecture.splitlines() if line.startswith(row_start))
        stems = {p.stem for p in (ROOT / folder).glob("*.rs")} - {"mod", "lib"}
        assert {m for m in stems if m not in row and m.replace("_", " ") not in row} == set()
    # and nothing flat is left at the top but the face
    top = {p.stem for p in package.glob("*.py")}
    assert top == {"__init__", "errors", "exceptions", "money", "wire", "extras", "batch"}
