"""The ``spotex`` command (entry point ``spotex.cli:main``): ``main`` holds the root
group and the commands that run things (serve, gateway, cluster, demo, bench, replay,
simulate, config); ``market`` the trading, seller and operator commands over the SDK."""

from spotex.cli.main import main

__all__ = ["main"]
