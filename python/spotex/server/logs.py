"""The server's log: text for a terminal, or JSON lines for a log pipeline
(``spotex serve --log-format json``). A JSON line holds the time (ISO 8601, UTC), the
level, the logger, the message, and the fields the code attached (``extra=``): for the
access log ``method``, ``code``, ``ms`` and ``account``. Tokens are never logged."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

# what every LogRecord has: everything else on a record came from ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message",
                                                                            "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                    timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname.lower(), "logger": record.name,
                "msg": record.getMessage()}
        line.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


FORMATS = ("text", "json")

# the line a server logs once it serves ("spotex listening on HOST:PORT"), in either
# format: how a process that started one learns its address
LISTENING = re.compile(r"listening on ([^\s\"]+)")


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """Sends the log to stderr in ``fmt`` (text or json)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
