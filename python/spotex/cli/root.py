"""The ``spotex`` group itself: the options every command shares (server, token,
profile, ``--json``), and how every command fails: one line (JSON under ``--json``)
and a non-zero exit, never a traceback. ``login`` saves a profile."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click
import grpc
from rich.console import Console

from spotex.cli.output import emit
from spotex.cli.profiles import load_profiles, save_profile
from spotex.client import (
    Client,
    RpcError,
)
from spotex.extras import MissingExtra, require

console = Console()
DEFAULT_SERVER = "127.0.0.1:50551"


def _require(module: str, extra: str, feature: str) -> None:
    try:
        require(module, extra, feature)
    except MissingExtra as e:
        raise click.ClickException(str(e)) from None


def _unreachable(code: grpc.StatusCode | None, transport: bool, server: str) -> str:
    """What to check when gRPC itself could not reach the server (no spotex reason came
    back, so no spotex server answered): empty for any other failure."""
    if code != grpc.StatusCode.UNAVAILABLE or not transport:
        return ""
    return f"is `spotex serve` running at {server}? (--server, SPOTEX_SERVER, or the profile)"


def _rpc_message(err: RpcError, server: str = "") -> str:
    head = err.code.name if err.reason in ("", err.code.name) else f"{err.code.name} {err.reason}"
    line = f"{head}: {err.message}" if err.message else head
    hint = _unreachable(err.code, err.transport, server)
    return f"{line}; {hint}" if hint else line


def _error_json(err: Exception, server: str = "") -> str:
    """A failure as one JSON object, for ``--json`` callers that parse what they get
    (``hint`` only when the server could not be reached)."""
    if isinstance(err, RpcError):
        body = {"code": err.code.name, "reason": err.reason, "message": err.message}
        hint = _unreachable(err.code, err.transport, server)
        if hint:
            body["hint"] = hint
    else:
        body = {"code": "USAGE" if isinstance(err, click.UsageError) else "ERROR",
                "reason": "", "message": err.format_message()
                if isinstance(err, click.ClickException) else str(err)}
    return json.dumps({"error": body})


class _JsonError(click.ClickException):
    """A ClickException shown as one JSON line on stderr, with the same exit code."""

    def __init__(self, err: Exception, server: str = "") -> None:
        super().__init__(_error_json(err, server))

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


class _JsonUsageError(_JsonError):
    exit_code = 2


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and ctx.obj is not None:
        ctx.obj["json"] = True


_NEGATIVE = re.compile(r"-\d[\d.]*")


class _Command(click.Command):
    """Every command takes ``--json`` after its name as well as before it, and reads a
    negative number where an argument goes as that argument (its type refuses it, saying
    why), not as an unknown option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(
            ["--json"], is_flag=True, expose_value=False, is_eager=True,
            help="print JSON instead of tables (also before the command)",
            callback=_json_flag))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, list(args))  # the parser consumes its list
        except click.NoSuchOption as e:
            if not _NEGATIVE.fullmatch(e.option_name):
                raise
        # a negative number: parse again with it as an argument, so that the argument's
        # own type says what is wrong with it ("prices are positive")
        ctx.ignore_unknown_options = True
        return super().parse_args(ctx, args)


class _Spotex(click.Group):
    """Every command's errors as one line and a non-zero exit, never a traceback: a call
    the server refused (with its code and reason), a server that cannot be reached, an
    extra that is not installed. Under ``--json`` the line is a JSON object."""

    command_class = _Command
    group_class = type  # subgroups (seller, operator) behave the same

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # asked for JSON anywhere: a usage error found before --json is parsed says so too
        ctx.meta["spotex.json"] = "--json" in (args[:args.index("--")] if "--" in args
                                               else args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except RpcError as err:
                raise click.ClickException(_rpc_message(err, ctx.obj["server"])) from err
            except grpc.RpcError as err:  # a stream that broke off, and the like
                code = err.code() if hasattr(err, "code") else None
                details = err.details() if hasattr(err, "details") else str(err)
                trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else ()
                hint = _unreachable(code, "spotex-reason" not in dict(trailers or ()),
                                    ctx.obj["server"])
                raise click.ClickException(f"{code.name if code else 'ERROR'}: {details}"
                                           + (f"; {hint}" if hint else "")) from None
            except MissingExtra as err:
                raise click.ClickException(str(err)) from None
        except click.ClickException as err:
            if isinstance(err, _JsonError) or not (
                    ctx.meta.get("spotex.json") or (ctx.obj or {}).get("json")):
                raise
            cause = err.__cause__ if isinstance(err.__cause__, RpcError) else err
            raise (_JsonUsageError if err.exit_code == 2 else _JsonError)(
                cause, (ctx.obj or {}).get("server", "")) from None


def _checking(what: str) -> None:
    """The SDK looks up a command whose outcome is unknown: a person waiting is told why
    (on stderr: the output stays the order, or the one-line error)."""
    click.echo(f"the venue may have applied this; checking ({what})...", err=True)


def client(ctx: click.Context, market_data: str | None = None) -> Client:
    """The SDK, for the server and token the command was given (its market data from
    ``market_data``, the venue's relays, when given). A command whose outcome is unknown
    is looked up before it answers, saying so on stderr."""
    token = ctx.obj["token"]
    if not token:
        raise click.UsageError("give --token, set SPOTEX_TOKEN, or save a profile with "
                               "`spotex --server HOST:PORT --token T login`")
    return Client(ctx.obj["server"], token, on_unknown=_checking,
                  market_data_target=market_data or None)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spotex")
    except PackageNotFoundError:
        return "unknown"


@click.group(cls=_Spotex)
@click.option("--server", envvar="SPOTEX_SERVER", default=DEFAULT_SERVER, show_default=True,
              help="host:port of the spotex server (or SPOTEX_SERVER, or the profile's)")


@click.option("--token", envvar="SPOTEX_TOKEN", default="",
              help="bearer token (or SPOTEX_TOKEN, or the profile's)")


@click.option("--profile", envvar="SPOTEX_PROFILE", default="default", show_default=True,
              help="the saved profile (`spotex login`) to take server and token from")


@click.option("--json", "as_json", is_flag=True, help="print JSON instead of tables")
@click.version_option(_version(), "--version", prog_name="spotex", message="%(prog)s %(version)s")
@click.pass_context
def main(ctx: click.Context, server: str, token: str, profile: str, as_json: bool) -> None:
    """spotex: an exchange for GPU-hours.

    Shell completion: eval "$(_SPOTEX_COMPLETE=bash_source spotex)" (zsh_source,
    fish_source for the others)."""
    saved = load_profiles().get(profile, {})
    source = ctx.get_parameter_source
    if source("server") == click.core.ParameterSource.DEFAULT and saved.get("server"):
        server = saved["server"]
    if source("token") == click.core.ParameterSource.DEFAULT and saved.get("token"):
        token = saved["token"]
    # piped or redirected: one row per line, never wrapped, so that grep finds an id whole
    ctx.obj = {"server": server, "token": token, "profile": profile, "json": as_json,
               "console": console if sys.stdout.isatty() else Console(width=100_000)}


@main.command()
@click.option("--profile", "name", default=None,
              help="the profile to write (default: the one in use, or 'default')")


@click.pass_context
def login(ctx: click.Context, name: str | None) -> None:
    """Check --server and --token against the server and save them as a profile, so
    later commands need neither."""
    c = client(ctx)
    c.list_products()  # a wrong token or a server that is down fails here
    name = name or ctx.obj["profile"]
    path = save_profile(name, ctx.obj["server"], ctx.obj["token"])
    emit(ctx, {"profile": name, "server": ctx.obj["server"], "file": str(path)},
         lambda: f"saved profile {name!r} ({ctx.obj['server']}) in {path}")
