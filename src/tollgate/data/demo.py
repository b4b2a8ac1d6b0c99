"""The demo helpdesk database agents read by default (made by ``tollgate seed-demo``).

``users`` carries ``password_hash``, ``totp_secret`` and ``api_key`` columns on purpose: they
show that sensitive fields never leave the server. The values are generated placeholders.
"""

from __future__ import annotations

import random
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

USERS = 40
TICKETS = 300
CHANGES = 600
"""Enough rows to page through (the page size is at most 100)."""

SCHEMA = """
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    is_super_admin BOOLEAN NOT NULL DEFAULT 0,
    department TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret TEXT,
    api_key TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    priority TEXT NOT NULL,
    requester_id INTEGER NOT NULL REFERENCES users(id),
    assignee_id INTEGER REFERENCES users(id),
    created_at TEXT NOT NULL
);
CREATE TABLE change_log (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    changed_by INTEGER NOT NULL REFERENCES users(id),
    changed_at TEXT NOT NULL
);
"""

FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
DEPARTMENTS = ["support", "engineering", "billing", "sales"]
STATUSES = ["open", "pending", "resolved", "closed"]
PRIORITIES = ["low", "normal", "high", "urgent"]
SUBJECTS = ["Login fails", "Invoice wrong", "Export is slow", "Password reset", "API timeout"]


def create_helpdesk(path: Path) -> bool:
    """Create the demo database at ``path``; False when it exists already."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2026)  # noqa: S311 - reproducible demo rows, not secrets
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_user(n, rng, start) for n in range(1, USERS + 1)],
        )
        db.executemany(
            "INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?, ?)",
            [_ticket(n, rng, start) for n in range(1, TICKETS + 1)],
        )
        db.executemany(
            "INSERT INTO change_log VALUES (?, ?, ?, ?, ?, ?, ?)",
            [_change(n, rng, start) for n in range(1, CHANGES + 1)],
        )
    return True


def _user(n: int, rng: random.Random, start: datetime) -> tuple[object, ...]:
    first, last = FIRST[n % len(FIRST)], LAST[n % len(LAST)]
    return (
        n,
        f"{first.lower()}.{last.lower()}{n}@helpdesk.example",
        first,
        last,
        n == 1,
        rng.choice(DEPARTMENTS),
        f"$argon2id$v=19$m=65536,t=3,p=4${secrets.token_urlsafe(16)}${secrets.token_urlsafe(32)}",
        secrets.token_hex(10).upper(),
        f"hd_live_{secrets.token_urlsafe(24)}",
        (start + timedelta(days=n)).isoformat(),
    )


def _ticket(n: int, rng: random.Random, start: datetime) -> tuple[object, ...]:
    return (
        n,
        f"{rng.choice(SUBJECTS)} #{n}",
        rng.choice(STATUSES),
        rng.choice(PRIORITIES),
        rng.randint(1, USERS),
        rng.choice([None, *range(1, 11)]),
        (start + timedelta(hours=n * 7)).isoformat(),
    )


def _change(n: int, rng: random.Random, start: datetime) -> tuple[object, ...]:
    old, new = rng.sample(STATUSES, 2)
    return (
        n,
        rng.randint(1, TICKETS),
        "status",
        old,
        new,
        rng.randint(1, 10),
        (start + timedelta(hours=n * 3)).isoformat(),
    )
