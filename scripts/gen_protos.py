"""Generates the Python gRPC code for protos/ into python/spotex/_proto/ (not committed).

    python scripts/gen_protos.py

The generated modules import each other as `spotex.v1`; they are rewritten to live under
`spotex._proto`, the private package users never touch.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "python" / "spotex" / "_proto"


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={OUT}",
                      f"--pyi_out={OUT}", f"--grpc_python_out={OUT}", *files])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    for py in OUT.rglob("*.py*"):
        text = re.sub(r"^from spotex\.v1 import", "from spotex._proto.spotex.v1 import",
                      py.read_text(), flags=re.M)
        py.write_text(text)
    for d in [OUT, *[p for p in OUT.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    note = '"""Generated gRPC code (scripts/gen_protos.py). Do not edit."""\n'
    (OUT / "__init__.py").write_text(note)
    print(f"generated {', '.join(files)} into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
