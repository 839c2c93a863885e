"""Webhooks against a real receiver: an HTTP server in this process that verifies each request
with the Standard Webhooks reference library, as any user's receiver would; a real `tinytrain
serve` (on SQLite and on PostgreSQL) sends them."""

import http.server
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.cli import run, tinytrain
from tests.support.client import wait_for
from tests.support.data import sine_points
from tests.support.databases import fresh_database
from tests.support.ports import free_port
from tests.support.server import Server, clean_env, server_env

SMALL = {"dataset": sine_points(30, seed=1), "hyperparameters": {"epochs": 20, "seed": 2}}
LONG = {
    "dataset": sine_points(2000, seed=5),
    "hyperparameters": {"learning_rate": 0.001, "batch_size": 1, "epochs": 10**6},
}
ALL_EVENTS = ["job.succeeded", "job.failed", "job.cancelled", "sweep.succeeded", "sweep.failed", "sweep.cancelled"]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers each request with the next of `answers` (200 when
    they run out) and keeps what it got."""

    port: int = field(default_factory=free_port)
    answers: list[int] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def events(self, secret: str, type: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(webhook-id, verified body) of each request signed with secret (of this type)."""
        verified = [(r.headers["webhook-id"], Webhook(secret).verify(r.body, r.headers)) for r in self.got]
        return [(i, body) for i, body in verified if type is None or body["type"] == type]

    def wait(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            assert time.monotonic() < deadline, f"{len(self.got)} of {count} requests arrived"
            time.sleep(0.05)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("webhooks")
    with fresh_database(request.param, tmp) as url:
        env = server_env(tmp, database_url=url, webhook_allow_private="true", webhook_retry_seconds="0.3,0.3")
        started = Server(tmp, env)
        started.start()
        yield started
        started.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    started.start()
    yield started
    started.stop()


def endpoint(client: httpx.Client, url: str, events: list[str] = ALL_EVENTS) -> dict[str, Any]:
    r = client.post("/v1/webhooks", json={"url": url, "events": events, "description": "test"})
    assert r.status_code == 201, r.text
    made: dict[str, Any] = r.json()
    assert made["secret"].startswith("whsec_") and made["enabled"] is True
    return made


def test_a_job_and_a_sweep_end_signed(server: Server, receiver: Receiver) -> None:
    with server.client() as c:
        hook = endpoint(c, receiver.url)
        assert "secret" not in c.get(f"/v1/webhooks/{hook['id']}").json()
        assert [h["id"] for h in c.get("/v1/webhooks").json()["items"]][0] == hook["id"]

        job_id = c.post("/v1/jobs", json=SMALL).json()["id"]
        wait_for(c, job_id, "succeeded")
        body = {**SMALL, "grid": {"learning_rate": [0.1, 0.3]}}
        sweep_id = c.post("/v1/sweeps", json=body).json()["id"]
        receiver.wait(2)
        (job_event,) = receiver.events(hook["secret"], "job.succeeded")
        listed = next(j for j in c.get("/v1/jobs").json()["items"] if j["id"] == job_id)
        assert job_event[1]["data"] == listed
        (sweep_event,) = receiver.events(hook["secret"], "sweep.succeeded")
        assert sweep_event[1]["data"]["id"] == sweep_id
        assert sweep_event[1]["data"] == next(s for s in c.get("/v1/sweeps").json()["items"] if s["id"] == sweep_id)
        assert receiver.got[0].headers["webhook-signature"].startswith("v1,")

        log = c.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
        assert sorted(a["type"] for a in log) == ["job.succeeded", "sweep.succeeded"]
        assert {a["http_status"] for a in log} == {200}

        running = c.post("/v1/jobs", json=LONG).json()["id"]
        wait_for(c, running, "running")
        c.post(f"/v1/jobs/{running}/cancel")
        receiver.wait(3)
        (cancelled,) = receiver.events(hook["secret"], "job.cancelled")
        assert cancelled[1]["data"]["id"] == running and cancelled[1]["data"]["status"] == "cancelled"
        c.delete(f"/v1/webhooks/{hook['id']}")


def test_a_receiver_that_fails_twice_gets_the_third_try_with_the_same_id(server: Server, receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    with server.client() as c:
        hook = endpoint(c, receiver.url, ["job.succeeded"])
        ping = c.post(f"/v1/webhooks/{hook['id']}/test")
        assert ping.status_code == 202 and ping.json()["type"] == "ping"
        receiver.wait(3)
        ids = {i for i, _ in receiver.events(hook["secret"])}
        assert ids == {ping.json()["id"]}
        deadline = time.monotonic() + 10
        while len(log := c.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [a["http_status"] for a in log] == [200, 503, 500]  # newest first

        again = c.post(f"/v1/webhooks/{hook['id']}/deliveries/{ping.json()['id']}/retry")
        assert again.status_code == 202
        receiver.wait(4)
        assert receiver.got[3].headers["webhook-id"] == ping.json()["id"]
        c.delete(f"/v1/webhooks/{hook['id']}")


def test_an_endpoint_failing_the_whole_schedule_is_disabled(server: Server, receiver: Receiver) -> None:
    receiver.answers = [500] * 10
    with server.client() as c:
        hook = endpoint(c, receiver.url)
        c.post(f"/v1/webhooks/{hook['id']}/test")
        receiver.wait(3)  # the first try and one per delay of the schedule
        deadline = time.monotonic() + 10
        while (now := c.get(f"/v1/webhooks/{hook['id']}").json())["enabled"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert "every try" in now["disabled_reason"] and "HTTP 500" in now["disabled_reason"]
        time.sleep(1)
        assert len(receiver.got) == 3
        assert c.post(f"/v1/webhooks/{hook['id']}/test").status_code == 409
        assert c.post(f"/v1/webhooks/{hook['id']}/enable").json()["enabled"] is True
        receiver.answers = []
        c.post(f"/v1/webhooks/{hook['id']}/test")
        receiver.wait(4)
        c.delete(f"/v1/webhooks/{hook['id']}")


def test_a_rotated_secret_signs_what_follows(server: Server, receiver: Receiver) -> None:
    with server.client() as c:
        hook = endpoint(c, receiver.url)
        rotated = c.post(f"/v1/webhooks/{hook['id']}/rotate-secret").json()
        assert rotated["secret"] != hook["secret"]
        c.post(f"/v1/webhooks/{hook['id']}/test")
        receiver.wait(1)
        assert len(receiver.events(rotated["secret"])) == 1
        with pytest.raises(Exception, match="signature"):
            receiver.events(hook["secret"])
        c.delete(f"/v1/webhooks/{hook['id']}")


def test_another_owner_cannot_see_or_change_an_endpoint(server: Server, receiver: Receiver) -> None:
    with server.client() as c, server.client(server.new_key(f"stranger-{time.monotonic_ns()}")) as stranger:
        hook = endpoint(c, receiver.url)
        ping = c.post(f"/v1/webhooks/{hook['id']}/test").json()
        assert stranger.get("/v1/webhooks").json()["items"] == []
        base = f"/v1/webhooks/{hook['id']}"
        for method, path in [
            ("GET", base),
            ("DELETE", base),
            ("POST", f"{base}/rotate-secret"),
            ("POST", f"{base}/enable"),
            ("POST", f"{base}/test"),
            ("GET", f"{base}/deliveries"),
            ("POST", f"{base}/deliveries/{ping['id']}/retry"),
        ]:
            assert stranger.request(method, path).status_code == 404, (method, path)
        assert c.get(base).json()["enabled"] is True
        c.delete(base)


def test_a_deleted_endpoint_gets_nothing_more(server: Server, receiver: Receiver) -> None:
    with server.client() as c:
        hook = endpoint(c, receiver.url)
        assert c.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
        assert c.get(f"/v1/webhooks/{hook['id']}").status_code == 404
        job_id = c.post("/v1/jobs", json=SMALL).json()["id"]
        wait_for(c, job_id, "succeeded")
        time.sleep(1.5)
        assert receiver.got == []


def test_bad_endpoints_are_a_422_naming_the_field(server: Server) -> None:
    with server.client() as c:
        for body, loc in [
            ({"url": "ftp://127.0.0.1/x", "events": ["job.failed"]}, ["body", "url"]),
            ({"url": "http://user:pw@127.0.0.1/x", "events": ["job.failed"]}, ["body", "url"]),
            ({"url": "http://no-such-host.invalid/x", "events": ["job.failed"]}, ["body", "url"]),
            ({"url": "http://127.0.0.1/x", "events": ["job.started"]}, ["body", "events", 0]),
            ({"url": "http://127.0.0.1/x", "events": []}, ["body", "events"]),
            ({"url": "http://127.0.0.1/\x00", "events": ["job.failed"]}, ["body", "url"]),
        ]:
            r = c.post("/v1/webhooks", json=body)
            assert r.status_code == 422, r.text
            assert r.json()["detail"][0]["loc"] == loc, r.text
        assert c.get("/v1/webhooks/wh_nope").status_code == 404


LOOPBACK_URLS = [
    "http://127.0.0.1:{port}/hooks",
    "http://127.0.0.2:{port}/hooks",
    "http://localhost:{port}/hooks",
    "http://[::1]:{port}/hooks",
    "http://[::ffff:127.0.0.1]:{port}/hooks",
    "https://127.0.0.1:{port}/hooks",
]


def test_loopback_targets_are_refused_at_creation_and_at_delivery(tmp_path: Path, receiver: Receiver) -> None:
    """With TINYTRAIN_WEBHOOK_ALLOW_PRIVATE off. Only loopback addresses are tried, and the
    receiver on one of them shows that no request reached it."""
    started = Server(tmp_path, server_env(tmp_path, webhook_retry_seconds="0.2"))
    started.start()
    try:
        with started.client() as c:
            for template in LOOPBACK_URLS:
                r = c.post("/v1/webhooks", json={"url": template.format(port=receiver.port), "events": ["job.failed"]})
                assert r.status_code == 422, (template, r.text)
                assert r.json()["detail"][0]["loc"] == ["body", "url"]
                assert "loopback" in r.json()["detail"][0]["msg"]
            # An endpoint made while its name resolved elsewhere (written here as the service
            # would have): each delivery checks again, and refuses.
            with sqlite3.connect(tmp_path / "tinytrain.db") as db:
                owner = db.execute("SELECT owner FROM api_keys LIMIT 1").fetchone()[0]
                db.execute(
                    "INSERT INTO webhook_endpoints (id, owner, url, events, description, secret, enabled, created_at)"
                    " VALUES (?, ?, ?, ?, NULL, ?, 1, '2026-01-01 00:00:00')",
                    ("wh_" + "ab" * 12, owner, receiver.url, json.dumps(["job.failed"]), "whsec_" + "QUJD" * 11),
                )
            c.post(f"/v1/webhooks/wh_{'ab' * 12}/test")
            deadline = time.monotonic() + 10
            while not (log := c.get(f"/v1/webhooks/wh_{'ab' * 12}/deliveries").json()["items"]):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert log[0]["http_status"] is None and log[0]["error"].startswith("refused: ")
            assert "loopback" in log[0]["error"]
        assert receiver.got == []
    finally:
        started.stop()


def test_an_event_survives_a_receiver_down_and_serve_killed(tmp_path: Path) -> None:
    """The receiver is down when the job ends and serve is killed with -9 while it retries:
    once both are back, the event arrives, with the webhook-id it had."""
    env = server_env(tmp_path, webhook_allow_private="true", webhook_retry_seconds="1,1,1,1,1,1,1,1,1,1,1,1")
    started = Server(tmp_path, env)
    started.start()
    receiver = Receiver()  # its port is chosen, nothing listens on it yet
    try:
        with started.client() as c:
            hook = endpoint(c, receiver.url, ["job.succeeded"])
            job_id = c.post("/v1/jobs", json=SMALL).json()["id"]
            wait_for(c, job_id, "succeeded")
            deadline = time.monotonic() + 10
            while not (log := c.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert log[0]["http_status"] is None and "Connect" in log[0]["error"]
            failed_id = log[0]["delivery_id"]
        started.stop(kill=True)
        receiver.start()
        started.start()
        receiver.wait(1)
        (event,) = receiver.events(hook["secret"])
        assert event[0] == failed_id and event[1]["data"]["id"] == job_id
    finally:
        started.stop()
        receiver.stop()


def test_the_cli_creates_lists_shows_deliveries_and_deletes(server: Server, receiver: Receiver, tmp_path: Path) -> None:
    env = {**clean_env(), "TINYTRAIN_URL": server.url, "TINYTRAIN_API_KEY": server.key}
    made = json.loads(
        tinytrain("webhooks", "create", receiver.url, "--event", "job.failed", "--json", env=env, cwd=tmp_path)
    )
    assert made["events"] == ["job.failed"] and made["secret"].startswith("whsec_")
    assert made["id"] in tinytrain("webhooks", "list", env=env, cwd=tmp_path)
    tinytrain("webhooks", "test", made["id"], env=env, cwd=tmp_path)
    receiver.wait(1)
    assert receiver.events(made["secret"])[0][1]["type"] == "ping"
    deadline = time.monotonic() + 10
    while "ping" not in (log := tinytrain("webhooks", "deliveries", made["id"], env=env, cwd=tmp_path)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert " 200 " in log
    assert run("webhooks", "create", receiver.url, "--event", "job.started", env=env, cwd=tmp_path).returncode == 2
    tinytrain("webhooks", "delete", made["id"], env=env, cwd=tmp_path)
    gone = run("webhooks", "deliveries", made["id"], env=env, cwd=tmp_path)
    assert gone.returncode == 2 and "not found" in gone.stderr


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_creates_at_once_never_pass_the_owners_endpoint_limit(database: str, tmp_path: Path) -> None:
    with fresh_database(database, tmp_path) as url:
        env = server_env(tmp_path, database_url=url, webhook_allow_private="true", max_webhooks_per_owner="2")
        started = Server(tmp_path, env)
        started.start()
        try:
            with started.client() as c, ThreadPoolExecutor(8) as pool:
                body = {"url": f"http://127.0.0.1:{free_port()}/hooks", "events": ["job.failed"]}
                codes = list(pool.map(lambda _: c.post("/v1/webhooks", json=body).status_code, range(8)))
                assert sorted(codes) == [201, 201] + [429] * 6, codes
                assert len(c.get("/v1/webhooks").json()["items"]) == 2
        finally:
            started.stop()
