"""Generates the Python gRPC code for protos/ into python/spotex/_proto/ (committed, so
that ``pip install`` of a clone or a wheel carries it with no extra step).

    python scripts/gen_protos.py           # after changing a .proto
    python scripts/gen_protos.py --check   # CI: fails if the committed code is stale

The generated modules import each other as `spotex.v1`; they are rewritten to live under
`spotex._proto`, the private package users never touch. Needs the pinned grpcio-tools
(the `test` extra), no newer than the minimum grpcio the package requires.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "python" / "spotex" / "_proto"
NOTE = '"""Generated gRPC code (scripts/gen_protos.py). Do not edit."""\n'


def generate(out: Path) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out}",
                      f"--pyi_out={out}", f"--grpc_python_out={out}", *files])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    for py in out.rglob("*.py*"):
        text = re.sub(r"^from spotex\.v1 import", "from spotex._proto.spotex.v1 import",
                      py.read_text(), flags=re.M)
        py.write_text(text)
    for d in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    (out / "__init__.py").write_text(NOTE)
    return files


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def check() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "_proto"
        generate(fresh)
        want, have = _tree(fresh), _tree(OUT) if OUT.exists() else set()
        stale = sorted(want ^ have) + sorted(
            f for f in want & have if not filecmp.cmp(fresh / f, OUT / f, shallow=False))
    if stale:
        print(f"{OUT.relative_to(ROOT)} is stale ({', '.join(stale)}): "
              "run python scripts/gen_protos.py and commit the result", file=sys.stderr)
        return 1
    print(f"{OUT.relative_to(ROOT)} matches protos/")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed code differs from what protos/ gives")
    if parser.parse_args().check:
        sys.exit(check())
    files = generate(OUT)
    print(f"generated {', '.join(files)} into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
