"""Saved profiles (``spotex login``): a server and a token per name, in an
owner-only TOML file under ``$XDG_CONFIG_HOME/spotex``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click


def profiles_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "spotex" / "profiles.toml"


def load_profiles() -> dict[str, dict[str, str]]:
    import tomllib

    path = profiles_file()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise click.ClickException(f"{path}: {err}") from None
    return {k: {a: str(b) for a, b in v.items()} for k, v in data.items() if isinstance(v, dict)}


def save_profile(name: str, server: str, token: str) -> Path:
    """Writes the profile (owner-only: it holds a token)."""
    path = profiles_file()
    profiles = load_profiles()
    profiles[name] = {"server": server, "token": token}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"[{json.dumps(k)}]\nserver = {json.dumps(v['server'])}\n"
                   f"token = {json.dumps(v['token'])}\n\n" for k, v in profiles.items())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
