"""Seed a database at company scale for the benchmarks.

    python bench/seed.py PATH_OR_URL [--scale 1] [--users 200 --requests 10000 --images 2000
                               --deployments 2000 --audit 100000 --deliveries 5000 --running 0]

``--scale N`` multiplies every count (``--scale 10``: 2,000 users, 100,000 requests,
20,000 images and deployments, 1,000,000 audit rows, 50,000 webhook deliveries).
Creates (or upgrades) the schema first, then inserts rows with ``executemany`` in
one transaction (the audit search index is filled by its triggers as rows go in).
Deterministic for a given --seed. Prints what it wrote.

PATH_OR_URL is a SQLite file or a ``postgresql://`` URL of an existing (empty or
migrated) database: the same rows either way. SQLite gets its bulk-load PRAGMAs and a
one-off rebuild of the audit search index; PostgreSQL keeps its indexes as they are
and gets its id sequences moved past the ids inserted here.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from werkzeug.security import generate_password_hash  # noqa: E402

from samosval.db import connect, dialect, init_db_if_needed, transaction  # noqa: E402
from samosval.domain.repos import normalize_repo_url  # noqa: E402

STATUSES = ("draft", "submitted", "in_review", "approved", "rejected")
DEPLOY_STATUSES = ("running", "running", "running", "stopped", "failed", "deploying")
ACTIONS = (
    "login",
    "request_create",
    "request_edit",
    "request_status",
    "build_start",
    "build_finish",
    "deployment_create",
    "deployment_restart",
    "deployment_stop",
    "commit_hook_received",
)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


DEFAULTS = {
    "users": 200,
    "requests": 10_000,
    "images": 2_000,
    "deployments": 2_000,
    "audit": 100_000,
    "deliveries": 5_000,
}
OUTCOMES = ("processed", "processed", "no_match", "duplicate", "refused", "ignored")


def scaled(scale: int) -> dict:
    """The default counts times ``scale``."""
    return {name: count * scale for name, count in DEFAULTS.items()}


def seed(
    path: str,
    users=200,
    requests=10_000,
    images=2_000,
    deployments=2_000,
    audit=100_000,
    running=0,
    seed_value=7,
    deliveries=5_000,
) -> dict:
    rng = random.Random(seed_value)
    init_db_if_needed(path)
    db = connect(path)
    sqlite = dialect(db) == "sqlite"
    if sqlite:
        # A throw-away bulk load: no journal (a crash leaves a database to delete, not
        # to repair), no fsync, and a page cache big enough for the search index.
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA cache_size = -262144")
    with transaction(db):
        _insert_rows(db, sqlite, rng, users, requests, images, deployments, audit, running, deliveries)
    db.execute("ANALYZE")
    if sqlite:
        db.execute("PRAGMA journal_mode = WAL")
    counts = {
        table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in (
            "users",
            "image_requests",
            "images",
            "builds",
            "deployments",
            "audit_log",
            "webhook_deliveries",
        )
    }
    db.close()
    return counts


# Tables whose ids are given explicitly below: PostgreSQL's sequences must move past them.
EXPLICIT_IDS = ("image_requests", "images")


def _insert_rows(db, sqlite, rng, users, requests, images, deployments, audit, running, deliveries) -> None:
    base = time.time() - 90 * 86400
    password_hash = generate_password_hash("password123")
    roles = ["operator"] * max(1, users // 10) + ["admin"] * 2
    user_rows = []
    for i in range(users):
        role = roles[i] if i < len(roles) else "developer"
        user_rows.append((f"user{i:04d}", password_hash, role, 1, iso(base + i)))
    db.executemany(
        "INSERT INTO users (username, password_hash, role, is_active, created_at) VALUES (?, ?, ?, ?, ?)",
        user_rows,
    )
    user_ids = [r[0] for r in db.execute("SELECT id FROM users WHERE username LIKE 'user%' ORDER BY id")]
    dev_ids = [
        r[0] for r in db.execute("SELECT id FROM users WHERE role = 'developer' AND username LIKE 'user%'")
    ]
    dev_names = {r[0]: r[1] for r in db.execute("SELECT id, username FROM users WHERE role='developer'")}

    request_rows, collab_rows = [], []
    for i in range(requests):
        owner = rng.choice(dev_ids)
        creator = rng.choice(dev_ids)
        collaborators = rng.sample(dev_ids, 2)
        repo = f"https://git.example.com/team{i % 150}/service{i % 700}.git"
        updated = base + i * 60
        request_rows.append(
            (
                i + 1,
                f"service-{i}",
                repo,
                "main",
                "continuous" if i % 3 else "static",
                None if i % 3 else "a" * 40,
                "python:3.12-slim",
                "pip install -r requirements.txt",
                "gunicorn app:app",
                "FROM python:3.12-slim",
                256 + (i % 8) * 128,
                1.0,
                f"1.{i % 50}.0",
                owner,
                STATUSES[i % 5] if i >= images else "approved",
                ", ".join(dev_names[c] for c in collaborators),
                creator,
                iso(updated),
                iso(updated),
                normalize_repo_url(repo),
            )
        )
        collab_rows.extend((i + 1, dev_names[c]) for c in collaborators)
    db.executemany(
        "INSERT INTO image_requests (id, image_name, repo_url, repo_branch, update_mode, target_commit, base_image, "
        "run_commands, entrypoint, dockerfile_content, ram_mb, vcpu, version_tag, owner_id, status, collaborators, "
        "created_by, created_at, updated_at, repo_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        request_rows,
    )
    db.executemany(
        "INSERT INTO request_collaborators (request_id, username) VALUES (?, ?) ON CONFLICT DO NOTHING",
        collab_rows,
    )

    image_rows, build_rows = [], []
    for i in range(images):
        request_id = i + 1
        image_rows.append(
            (
                i + 1,
                request_id,
                f"service-{i}",
                f"1.{i % 50}.0",
                f"service-{i}:1.{i % 50}.0",
                iso(base + i * 60 + 30),
                f"sha256:{rng.getrandbits(256):064x}",
                1,
            )
        )
        build_rows.append(
            (
                request_id,
                i + 1,
                "success",
                "Step 1/5 ...\nPushed.\n",
                rng.choice(user_ids[:20]),
                iso(base + i * 60 + 10),
                iso(base + i * 60 + 30),
                5,
                5,
            )
        )
    db.executemany(
        "INSERT INTO images (id, request_id, name, version, image_tag, created_at, digest, build_number) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        image_rows,
    )
    db.executemany(
        "INSERT INTO builds (request_id, image_id, status, build_log, built_by, created_at, updated_at, "
        "steps_done, steps_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        build_rows,
    )

    deployment_rows = []
    for i in range(deployments):
        status = "running" if i < running else DEPLOY_STATUSES[i % len(DEPLOY_STATUSES)]
        if running and i >= running and status == "running":
            status = "stopped"
        deployment_rows.append(
            (
                i % images + 1,
                f"svc-{i}",
                ("dev", "staging", "prod")[i % 3],
                status,
                1 + i % 3,
                f"{8000 + i % 1000}:8000",
                0,
                0,
                iso(base + i * 70),
                iso(base + i * 70),
            )
        )
    db.executemany(
        "INSERT INTO deployments (image_id, name, environment, status, replicas, ports, stopped_by_operator, "
        "needs_restart, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        deployment_rows,
    )

    # Spread over the same 90 days whatever the scale (a busier company, not a longer one).
    step = 90 * 86400 / max(audit, 1)

    def audit_rows():
        for i in range(audit):
            action = ACTIONS[i % len(ACTIONS)]
            yield (
                rng.choice(user_ids),
                action,
                "user" if action == "login" else "request",
                rng.randint(1, requests),
                f'{{"note": "event {i}", "field": "image_name"}}',
                iso(base + i * step),
                "10.0.0.1",
            )

    insert_audit = (
        "INSERT INTO audit_log (user_id, action, target_type, target_id, details, created_at, ip) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    if sqlite:
        # The search index is built once at the end ('rebuild': 4x faster than its
        # insert trigger row by row), then the trigger is put back as it was.
        trigger = db.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_fts_insert'").fetchone()[0]
        db.execute("DROP TRIGGER audit_fts_insert")
        db.executemany(insert_audit, audit_rows())
        db.execute("INSERT INTO audit_fts (audit_fts) VALUES ('rebuild')")
        db.execute(trigger)
    else:
        db.executemany(insert_audit, audit_rows())

    now = base + 90 * 86400
    db.executemany(
        "INSERT INTO webhook_deliveries (created_at, source, event, repo_url, repo_key, branch, commit_sha, "
        "outcome, reason, http_status, matched_request_ids, restarted_ids, marked_ids) "
        "VALUES (?, ?, 'push', ?, ?, 'main', ?, ?, NULL, 200, '[1, 2]', '[3, 4, 5]', '[]')",
        (
            (
                iso(now - deliveries * 60 + i * 60),
                ("generic", "github", "gitlab")[i % 3],
                f"https://git.example.com/team{i % 150}/service{i % 700}.git",
                f"git.example.com/team{i % 150}/service{i % 700}",
                f"{i:040x}",
                OUTCOMES[i % len(OUTCOMES)],
            )
            for i in range(deliveries)
        ),
    )
    if not sqlite:
        for table in EXPLICIT_IDS:
            db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="a SQLite file or a postgresql:// URL")
    parser.add_argument("--scale", type=int, default=1, help="multiply every default count")
    for name in DEFAULTS:
        parser.add_argument(f"--{name}", type=int, default=None)
    parser.add_argument("--running", type=int, default=0, help="exactly this many deployments running")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if not 1 <= args.scale <= 100:
        parser.error("--scale 1..100")
    counts = {
        name: getattr(args, name) if getattr(args, name) is not None else count
        for name, count in scaled(args.scale).items()
    }
    started = time.perf_counter()
    counts = seed(args.path, running=args.running, seed_value=args.seed, **counts)
    print(
        f"seeded {args.path} in {time.perf_counter() - started:.1f}s: "
        + ", ".join(f"{k}={v}" for k, v in counts.items())
    )


if __name__ == "__main__":
    main()
