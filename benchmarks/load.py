"""Load test: 50 locust users submitting tiny jobs and polling them for 60 s, against `serve` with
Celery workers, all on loopback. Fails on any error; at the end checks that every submitted job
succeeded, none twice.

    python -m benchmarks.load [--users 50] [--seconds 60] [--workers 2]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from sqlalchemy import func, select

from tests.support.celery import Stack
from tests.support.cli import BIN

HERE = Path(__file__).parent
ROOT = HERE.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tinytrain-load-"))
    stack = Stack.create(work, {"rate_limit": None})  # the service's own limit, per user's key
    env, url = stack.env, stack.server.url
    # locust imports the locustfile from its folder; the locustfile imports tests.support.
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        stack.start(args.workers)
        keys = make_keys(env, args.users)
        locust = subprocess.run(
            [
                str(BIN / "locust"),
                "-f",
                str(HERE / "locustfile.py"),
                "--headless",
                "--users",
                str(args.users),
                "--spawn-rate",
                "25",
                "--run-time",
                f"{args.seconds}s",
                "--host",
                url,
                "--only-summary",
                "--stop-timeout",
                "35",
                "--csv",
                str(work / "load"),
            ],
            env={**env, "TINYTRAIN_LOAD_KEYS": ",".join(keys), "PYTHONPATH": pythonpath},
            cwd=work,
        )
        all_succeeded = report(url, env, work)
        sys.exit(locust.returncode or (0 if all_succeeded else 1))
    finally:
        stack.stop()


def make_keys(env: dict[str, str], users: int) -> list[str]:
    """One key per user (so each user's requests count against its own rate limit), 10 owners."""
    from sqlalchemy.orm import Session

    from jobs import keys
    from jobs.db import make_engine

    with Session(make_engine(env["TINYTRAIN_DATABASE_URL"])) as session:
        return [keys.create(session=session, owner=f"user{i % 10}") for i in range(users)]


def report(url: str, env: dict[str, str], work: Path) -> bool:
    """Print jobs by status (from the database) and runs per job; True when all succeeded once."""
    from jobs.db import make_engine
    from jobs.tables import Job

    engine = make_engine(env["TINYTRAIN_DATABASE_URL"])
    with engine.connect() as conn:
        by_status = dict(conn.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        runs = dict(conn.execute(select(Job.attempts, func.count()).group_by(Job.attempts)).all())
    print(f"jobs by status: {by_status}; jobs by attempts: {runs}")
    print(f"ready after the run: {httpx.get(url + '/readyz').status_code}; locust CSVs in {work}")
    return set(by_status) == {"succeeded"} and set(runs) == {1}


if __name__ == "__main__":
    main()
