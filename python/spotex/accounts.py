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
    token_sha256: str = field(repr=False)

    def has(self, role: str) -> bool:
        return role in self.roles


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
        self._by_hash[a.token_sha256] = a

    def authenticate(self, token: str) -> Account | None:
        # The lookup is by the token's hash, so response time does not depend on how
        # much of a guessed token matches a real one.
        return self._by_hash.get(token_hash(token))

    def get(self, account_id: int) -> Account | None:
        return self._by_id.get(account_id)

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
        tmp.write_text(json.dumps(rows, indent=1))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self._path)
