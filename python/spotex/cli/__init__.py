"""The ``spotex`` command (entry point ``spotex.cli:main``), one module per group of
commands: ``root`` (the group, its shared options and its errors, ``login``), ``prices``
(curve, candles, index, trades), ``money`` (balance, statement, the operator's deposits, fees,
settlement),
``trading``, ``seller``, ``operator``, and ``run`` (serve, gateway, cluster up, config,
demo, bench, simulate, replay); ``output`` prints tables or JSON, ``params`` parses
prices, quantities, hours and the like, ``profiles`` keeps ``spotex login``'s profiles."""

from spotex.cli import money, operator, prices, run, seller, trading  # noqa: F401 - they add commands
from spotex.cli.root import main

__all__ = ["main"]
