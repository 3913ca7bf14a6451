"""Accounts, roles and bearer tokens. Tokens are shown once at creation; only their
SHA-256 is kept (in memory and in ``accounts.json`` under the data directory)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

BUYER, SELLER, OPERATOR = "buyer", "seller", "operator"
ROLES = (BUYER, SELLER, OPERATOR)
OPERATOR_ACCOUNT_ID = 1


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Account:
    account_id: int
    name: str
    roles: list[str]
    token_sha256: str = field(repr=False)  # "" once revoked
    enabled: bool = True  # False: the kill switch is on, every call is refused

    def has(self, role: str) -> bool:
        return role in self.roles


class AccountError(ValueError):
    """A request about an account that cannot be done; ``reason`` says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Accounts:
    """The account registry. Thread-safe; persists to ``path`` when given."""

    def __init__(self, path: Path | None = None, operator_token: str | None = None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._by_id: dict[int, Account] = {}
        self._by_hash: dict[str, Account] = {}
        if path is not None and path.exists():
            for row in json.loads(path.read_text()):
                self._add(Account(**row))
        if operator_token:
            op = Account(OPERATOR_ACCOUNT_ID, "operator", [OPERATOR], token_hash(operator_token))
            old = self._by_id.get(OPERATOR_ACCOUNT_ID)
            if old is not None:
                self._by_hash.pop(old.token_sha256, None)
            self._add(op)

    def _add(self, a: Account) -> None:
        self._by_id[a.account_id] = a
        if a.token_sha256:
            self._by_hash[a.token_sha256] = a

    def authenticate(self, token: str) -> Account | None:
        # The lookup is by the token's hash, so response time does not depend on how
        # much of a guessed token matches a real one.
        return self._by_hash.get(token_hash(token))

    def get(self, account_id: int) -> Account | None:
        return self._by_id.get(account_id)

    def all(self) -> list[Account]:
        """Every account, by id."""
        return [self._by_id[k] for k in sorted(self._by_id)]

    def _participant(self, account_id: int) -> Account:
        a = self._by_id.get(account_id)
        if a is None:
            raise AccountError("UNKNOWN_ACCOUNT", f"no account {account_id}")
        if a.account_id == OPERATOR_ACCOUNT_ID:
            raise AccountError("OPERATOR_ACCOUNT", "the operator account is set by "
                               "--operator-token, not through the API")
        return a

    def set_enabled(self, account_id: int, enabled: bool) -> Account:
        """The kill switch (``enabled=False``): every call of the account is refused."""
        with self._lock:
            a = self._participant(account_id)
            a.enabled = enabled
            self._save()
        return a

    def rotate(self, account_id: int) -> tuple[Account, str]:
        """A new token for the account; the old one stops working at once."""
        token = "sx_" + secrets.token_urlsafe(32)
        with self._lock:
            a = self._participant(account_id)
            self._by_hash.pop(a.token_sha256, None)
            a.token_sha256 = token_hash(token)
            self._by_hash[a.token_sha256] = a
            self._save()
        return a, token

    def revoke(self, account_id: int) -> Account:
        """The account's token stops working; ``rotate`` gives it a new one."""
        with self._lock:
            a = self._participant(account_id)
            self._by_hash.pop(a.token_sha256, None)
            a.token_sha256 = ""
            self._save()
        return a

    def create(self, name: str, roles: list[str]) -> tuple[Account, str]:
        if not name or len(name) > 128:
            raise ValueError("account name must have 1 to 128 characters")
        bad = [r for r in roles if r not in ROLES]
        if bad or not roles:
            raise ValueError(f"roles must be some of {', '.join(ROLES)}")
        token = "sx_" + secrets.token_urlsafe(32)
        with self._lock:
            account_id = max([OPERATOR_ACCOUNT_ID, *self._by_id]) + 1
            a = Account(account_id, name, sorted(set(roles)), token_hash(token))
            self._add(a)
            self._save()
        return a, token

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        rows = [asdict(a) for a in self._by_id.values() if a.account_id != OPERATOR_ACCOUNT_ID]
        # owner-only: token hashes are not tokens, but nobody else needs to read them
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(rows, indent=1))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # an older file's mode does not carry over
        os.replace(tmp, self._path)
