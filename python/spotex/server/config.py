"""The server's settings, defined once: each has a key in the configuration file (TOML,
``section.name``), a ``spotex serve`` flag and a ``SPOTEX_*`` environment variable.

Precedence, lowest first: the default, the file (``--config FILE`` or
``SPOTEX_CONFIG``), the environment, the command line. A file is validated whole before
anything starts; every message names the key. ``spotex config check FILE`` validates
one; ``spotex config show`` prints the effective values with secrets masked.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from spotex.server.limits import Limits


@dataclass(frozen=True)
class Setting:
    key: str  # "journal.fsync"
    flag: str  # "--fsync"; booleans "--access-log/--no-access-log"
    default: Any
    kind: Any  # a click ParamType, or bool
    help: str
    secret: bool = False

    @property
    def param(self) -> str:
        """The click parameter's name."""
        return self.flag.split("/")[0].lstrip("-").replace("-", "_")

    @property
    def envvar(self) -> str:
        return "SPOTEX_" + self.param.upper()


def _choice(*words: str) -> click.Choice[str]:
    return click.Choice(words)


class _Clock(click.ParamType[str]):
    """A time of day, HH:MM in UTC; empty: none."""
    name = "HH:MM"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value).strip()
        if not text:
            return ""
        try:
            hh, mm = text.split(":")
            if len(mm) != 2 or not (0 <= int(hh) < 24 and 0 <= int(mm) < 60):
                raise ValueError
        except ValueError:
            self.fail(f"{text!r} is not a time of day HH:MM (UTC), like 12:00", param, ctx)
        return f"{int(hh):02d}:{mm}"


_CLOCK = _Clock()


class _Credit(click.ParamType[str]):
    """Dollars (0 or more), or "unlimited"."""
    name = "DOLLARS|unlimited"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value).strip().lower()
        if text == "unlimited":
            return text
        from spotex.money import parse_price
        try:
            if parse_price(text) < 0:
                raise ValueError
        except (ValueError, TypeError):
            self.fail(f"{value!r} is not an amount in dollars like 500 or 0.50 (0 or more), "
                      "nor 'unlimited'", param, ctx)
        return text


_CREDIT = _Credit()


def credit_micros(text: str) -> int | None:
    """A checked ``--default-credit-limit`` in micro-dollars; None: unlimited."""
    from spotex.money import parse_price
    return None if text == "unlimited" else parse_price(text)


SETTINGS: tuple[Setting, ...] = (
    Setting("server.listen", "--listen", "127.0.0.1:50551", click.STRING,
            "host:port to listen on (loopback by default)"),
    Setting("server.data_dir", "--data-dir", "spotex-data", click.STRING,
            "journal, snapshots, history and accounts"),
    Setting("server.operator_token", "--operator-token", "", click.STRING,
            "token of the operator account (empty: operator calls are disabled)", secret=True),
    Setting("server.gateway_token", "--gateway-token", "", click.STRING,
            "a shard behind `spotex gateway`: the token the gateway presents, acting for "
            "the accounts it authenticated (empty: no gateway)", secret=True),
    Setting("server.metrics_listen", "--metrics-listen", "", click.STRING,
            "serve Prometheus metrics at http://HOST:PORT/metrics (empty: off)"),
    Setting("server.web_listen", "--web-listen", "", click.STRING,
            "serve the venue's web page at http://HOST:PORT/ (empty: off)"),
    Setting("server.market_data_relays", "--market-data-relays", 0, click.IntRange(0, 64),
            "market-data relay processes to start and supervise: they serve "
            "StreamMarketData to many subscribers, off the order path (0: none; "
            "docs/scaling.md)"),
    Setting("server.market_data_listen", "--market-data-listen", "", click.STRING,
            "host:port the relays share (empty: the server's host, its port + 1)"),
    Setting("server.relay_nice", "--relay-nice", 10, click.IntRange(0, 19),
            "the relays' CPU niceness: on the server's machine order entry comes first, "
            "and a relay short of CPU conflates its slow subscribers"),
    Setting("server.log_format", "--log-format", "text", _choice("text", "json"),
            "json: one JSON object a line, for a log pipeline"),
    Setting("server.access_log", "--access-log/--no-access-log", True, bool,
            "a log line per call: method, status code, latency, account id"),
    Setting("journal.fsync", "--fsync", "batch", _choice("batch", "none"),
            "batch: one fsync per writer round before any of it is acknowledged; none: "
            "leave it to the OS (loses acknowledged orders on power loss)"),
    Setting("journal.snapshot_every", "--snapshot-every", 200_000, click.IntRange(1, None),
            "commands between automatic snapshots, at least (and at least five per resting "
            "order); one is also taken on a graceful stop"),
    Setting("journal.segment_mb", "--journal-segment-mb", 64, click.IntRange(1, 4096),
            "size past which a journal segment rolls over"),
    Setting("journal.retention", "--journal-retention", "delete",
            _choice("delete", "archive", "keep"),
            "segments wholly before the oldest kept snapshot: delete them, move them to "
            "DATA_DIR/journal-archive, or keep them"),
    Setting("journal.keep_ended_orders", "--keep-ended-orders", 100_000,
            click.IntRange(0, None),
            "ended orders kept in memory; older ones are answered from the history on disk"),
    Setting("journal.keep_executions", "--keep-executions", 100_000,
            click.IntRange(1, None),
            "each account's latest executions kept on disk (at least this many, up to an "
            "eighth more), that an executions stream can resume from (from_sequence)"),
    Setting("journal.nats", "--journal-nats", "", click.STRING,
            "NATS URLs, comma-separated: keep the journal on JetStream (the shard's stream, "
            "replicated, each round acknowledged by a quorum) instead of files; run the "
            "servers with sync_interval: always (`spotex cluster up` does)"),
    Setting("journal.shard", "--shard", "main", click.STRING,
            "with --journal-nats: the shard whose stream (spotex-SHARD) this server writes"),
    Setting("journal.shard_index", "--shard-index", 0, click.IntRange(0, 31),
            "a shard behind `spotex gateway`: its order and trade ids are numbered from "
            "INDEX << 48 (journaled once), so the gateway routes by id; the gateway's "
            "--shard list gives shard INDEX its INDEX-th place (0: a venue of one engine)"),
    Setting("journal.replicas", "--replicas", 3, click.IntRange(1, 5),
            "with --journal-nats: copies of the stream (3: a quorum of 2 survives one lost)"),
    Setting("journal.lease_seconds", "--lease-seconds", 3.0, click.FloatRange(0.5, 3600),
            "with --journal-nats: the shard's leader lease lives this long unless renewed "
            "(each tick): a standby takes over about this long after the leader dies; a "
            "leader that cannot renew for this long (NATS electing a leader after a lost "
            "server) refuses commands until it renews, or turns standby; the same for every "
            "server of the venue (the lease bucket keeps it, and refuses another)"),
    Setting("market.resale_fee_bps", "--resale-fee-bps", 0, click.IntRange(0, 10_000),
            "fee a resale's seller pays on each fill, in basis points of its value; each "
            "resale ask keeps the fee it was accepted with"),
    Setting("market.maker_fee_bps", "--maker-fee-bps", 0, click.IntRange(0, 10_000),
            "fee the resting side of a trade pays, in basis points of its value (the "
            "venue's; the operator may give an account its own: `spotex operator fees`)"),
    Setting("market.taker_fee_bps", "--taker-fee-bps", 0, click.IntRange(0, 10_000),
            "fee the arriving side of a trade pays (an auction's bids pay it too), in "
            "basis points of its value"),
    Setting("market.default_credit_limit", "--default-credit-limit", "0", _CREDIT,
            "dollars an account may spend beyond its balance unless the operator set its "
            "own (0: buyers need money deposited first; unlimited: money is not checked, "
            "a venue without a ledger's limits)"),
    Setting("auction.schedule", "--auction-schedule", "", _CLOCK,
            "run a block auction every day at HH:MM UTC over the hours of the next UTC "
            "day (empty: none; an operator's RunAuction runs one at any time)"),
    Setting("auction.time_limit", "--auction-time-limit", 10.0, click.FloatRange(0.1, 3600),
            "seconds the auction's optimiser may take; its best solution by then is used"),
    Setting("auction.hold", "--auction-hold", "auto", _choice("auto", "on", "off"),
            "hours listed are held for their block auction (asks and auction bids only, "
            "nothing trades continuously until it clears them): on, off, or auto (on "
            "when --auction-schedule is set)"),
    Setting("limits.max_open_orders", "--max-open-orders",
            Limits.max_open_orders_per_account, click.IntRange(1, None),
            "resting orders per account"),
    Setting("limits.orders_per_second", "--orders-per-second", Limits.orders_per_second,
            click.FloatRange(0, None, min_open=True), "sustained order-entry rate per account"),
    Setting("limits.order_burst", "--order-burst", Limits.order_burst, click.IntRange(1, None),
            "orders per account at once above that rate"),
    Setting("limits.max_message_bytes", "--max-message-bytes", Limits.max_message_bytes,
            click.IntRange(1024, 1 << 30), "largest request accepted"),
    Setting("limits.subscriber_queue", "--subscriber-queue", Limits.subscriber_queue,
            click.IntRange(1, None), "updates a stream may fall behind before it is dropped"),
    Setting("tls.cert", "--tls-cert", "", click.STRING,
            "PEM server certificate chain: serve TLS instead of plaintext"),
    Setting("tls.key", "--tls-key", "", click.STRING, "PEM private key of the certificate",
            secret=False),
    Setting("tls.client_ca", "--tls-client-ca", "", click.STRING,
            "PEM CA bundle: require client certificates signed by it"),
)
BY_KEY = {s.key: s for s in SETTINGS}
BY_PARAM = {s.param: s for s in SETTINGS}


class ConfigError(click.ClickException):
    """A configuration that cannot be used; the message names the key."""


def _typed(s: Setting, value: Any) -> Any:
    """The file's value checked against the setting: the TOML type first (no "5" for 5),
    then the setting's own range or choices."""
    if s.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{s.key}: expected true or false, got {value!r}")
        return value
    if isinstance(s.kind, click.types.IntParamType):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{s.key}: expected an integer, got {value!r}")
    elif isinstance(s.kind, click.types.FloatParamType):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{s.key}: expected a number, got {value!r}")
    elif not isinstance(value, str):
        raise ConfigError(f"{s.key}: expected a string, got {value!r}")
    try:
        return s.kind.convert(value, None, None)
    except click.BadParameter as err:
        raise ConfigError(f"{s.key}: {err.message}") from None


def load(path: Path) -> dict[str, Any]:
    """The settings a file sets, by key, validated; ConfigError names what is wrong."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror}") from None
    out: dict[str, Any] = {}
    sections = sorted({k.split(".")[0] for k in BY_KEY})
    for section, table in data.items():
        if section not in sections or not isinstance(table, dict):
            hint = difflib.get_close_matches(section, sections, 1)
            raise ConfigError(f"{path}: unknown section [{section}]"
                              + (f" (did you mean [{hint[0]}]?)" if hint else "")
                              + f"; sections are {', '.join(sections)}")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in BY_KEY:
                hint = difflib.get_close_matches(key, list(BY_KEY), 1)
                raise ConfigError(f"{path}: unknown key {key}"
                                  + (f" (did you mean {hint[0]}?)" if hint else ""))
            try:
                out[key] = _typed(BY_KEY[key], value)
            except ConfigError as err:
                raise ConfigError(f"{path}: {err.message}") from None
    return out


def effective(file_values: Mapping[str, Any], given: Mapping[str, Any],
              environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting's value, by key: ``given`` (from the command line or the
    environment, by click parameter name) over the file over the default. With
    ``environ``, the SPOTEX_* variables are read here (for ``config show``)."""
    values = {s.key: s.default for s in SETTINGS}
    values.update(file_values)
    for s in SETTINGS:
        if environ is not None and s.envvar in environ:
            raw = environ[s.envvar]
            try:
                if s.kind is bool:
                    values[s.key] = click.BOOL.convert(raw, None, None)
                else:
                    values[s.key] = s.kind.convert(raw, None, None)
            except click.BadParameter as err:
                raise ConfigError(f"{s.envvar}: {err.message}") from None
        if s.param in given:
            values[s.key] = given[s.param]
    return values


def show(values: Mapping[str, Any]) -> str:
    """The values as a TOML file, secrets masked."""
    lines: list[str] = []
    section = ""
    for s in SETTINGS:
        head, name = s.key.split(".")
        if head != section:
            lines.append(("\n" if lines else "") + f"[{head}]")
            section = head
        value = values[s.key]
        if s.secret and value:
            shown = '"********"'
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        elif isinstance(value, int | float):
            shown = repr(value)
        else:
            shown = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{name} = {shown}")
    return "\n".join(lines) + "\n"


def options(fn: Any) -> Any:
    """Decorates ``spotex serve`` with one option per setting (and ``--config``)."""
    for s in reversed(SETTINGS):
        extra = f" [default: {s.default!r}]" if s.default not in ("", None) else ""
        help_ = f"{s.help}{extra} (file: {s.key}; env: {s.envvar})"
        if s.kind is bool:
            fn = click.option(s.flag, s.param, default=s.default, envvar=s.envvar,
                              help=help_)(fn)
        else:
            fn = click.option(s.flag, s.param, type=s.kind, default=s.default,
                              envvar=s.envvar, help=help_)(fn)
    return click.option("--config", "config", type=click.Path(path_type=Path),
                        envvar="SPOTEX_CONFIG", default=None,
                        help="a TOML file of settings (flags and SPOTEX_* override it)")(fn)


def resolve(ctx: click.Context, params: Mapping[str, Any]) -> dict[str, Any]:
    """The effective settings of a ``serve`` call: flags and environment variables
    (what click saw) over the file over the defaults."""
    given = {}
    for name, value in params.items():
        if name in BY_PARAM:
            source = ctx.get_parameter_source(name)
            if source in (click.core.ParameterSource.COMMANDLINE,
                          click.core.ParameterSource.ENVIRONMENT):
                given[name] = value
    file_values = load(params["config"]) if params.get("config") else {}
    return effective(file_values, given)

