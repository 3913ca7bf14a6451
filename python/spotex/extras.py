"""Optional parts of spotex and the extra that installs each: the base install is what a
buyer, a seller or an operator needs (server, SDK, CLI); charts, the batch helpers and
the load generator bring their own libraries.

    pip install 'spotex[charts]'   # matplotlib: replay --charts, simulate's pictures
    pip install 'spotex[batch]'    # numpy: spotex.batch, bulk records for the engine
    pip install 'spotex[bench]'    # hdrhistogram: spotex bench; and the peer engines
    pip install 'spotex[export]'   # pyyaml: spotex export --format k8s
    pip install 'spotex[auction]'  # highspy: the block auction's optimiser
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ImportError):
    """A feature whose library is not installed; the message says which extra brings it."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{feature} needs {module.split('.')[0]}, which is not installed: "
                           f"pip install 'spotex[{extra}]'") from None


def available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
