"""tinytrain.client against real serve processes: typed answers, waiting, live events that resume
after a dropped connection, and retries (429 with Retry-After, 503 while the database is away, an
answer lost on the way back) that never make a job twice."""

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

import model
from tests.support.celery import Stack
from tests.support.data import sine_points
from tests.support.ports import free_port
from tests.support.proxy import Proxy
from tests.support.server import Server
from tinytrain.client import (
    ApiError,
    Client,
    Dataset,
    Halving,
    Job,
    JobProgressEvent,
    Result,
    Sweep,
    SweepProgressEvent,
    Unreachable,
    WaitTimeout,
)

POINTS = sine_points(200)
QUICK: dict[str, Any] = {"epochs": 40, "batch_size": 8, "device": "cpu"}
# Seconds of training in many engine calls: a job still running when a test acts on it.
STEADY: dict[str, Any] = {"learning_rate": 0.01, "batch_size": 1, "epochs": 30_000, "device": "cpu"}
LONG: dict[str, Any] = {**STEADY, "epochs": 1_000_000}  # trains past any test; cancelled


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, server.key) as c:
        yield c


@pytest.fixture
def retries(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The client's retry messages so far."""
    caplog.set_level(logging.INFO, logger="tinytrain.client")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "tinytrain.client"]


def test_upload_submit_wait_result_predict_delete(client: Client, tmp_path: Path) -> None:
    dataset = client.upload_dataset(POINTS["x"], POINTS["y"], name="sine")
    assert isinstance(dataset, Dataset) and (dataset.n_points, dataset.name) == (200, "sine")
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in zip(*POINTS.values(), strict=True)))
    from_csv = client.upload_dataset(csv=tmp_path / "d.csv")
    assert from_csv.n_points == 200 and from_csv.id != dataset.id
    assert client.upload_csv_once(tmp_path / "d.csv").id == client.upload_csv_once(tmp_path / "d.csv").id

    job = client.submit(dataset, hyperparameters={"epochs": 40}, batch_size=8, device="cpu")
    assert isinstance(job, Job) and job.dataset_id == dataset.id and job.hyperparameters["batch_size"] == 8
    done = client.wait(job.id, timeout=60)
    assert done.status == "succeeded" and done.result is not None
    assert job.id in [j.id for j in client.list_jobs(status="succeeded").items]

    result = client.result(job.id)
    assert isinstance(result, Result) and len(result.loss_history) == 40 and result.epochs is None
    assert result.parameters == done.result.parameters and result.final_loss == result.loss_history[-1]
    sliced = client.result(job.id, start=10, stop=20)
    assert sliced.loss_history == result.loss_history[10:20] and sliced.epochs == list(range(11, 21))
    spaced = client.result(job.id, max_points=5)
    assert spaced.epochs is not None and len(spaced.epochs) == 5 and (spaced.epochs[0], spaced.epochs[-1]) == (1, 40)
    assert spaced.loss_history == [result.loss_history[e - 1] for e in spaced.epochs]

    x = [-1.0, 0.0, 2.5]
    assert client.predict(job.id, x) == pytest.approx(model.predict(result.parameters.model_dump(), x), rel=1e-12)

    client.delete(job.id)
    with pytest.raises(ApiError) as gone:
        client.get(job.id)
    assert gone.value.status == 404 and job.id in str(gone.value.detail)
    client.delete_dataset(dataset.id)


def test_an_inline_job_and_4xx_answers_as_api_errors(server: Server, client: Client) -> None:
    job = client.wait(client.submit(x=POINTS["x"], y=POINTS["y"], **QUICK).id, timeout=60)
    assert job.status == "succeeded"
    with pytest.raises(ApiError) as invalid:
        client.submit(x=[0, 1], y=[0, 1], epochs=0)
    assert invalid.value.status == 422 and "epochs" in str(invalid.value)
    assert invalid.value.detail[0]["loc"][-1] == "epochs"  # the server's detail, as it sent it
    with pytest.raises(ApiError) as unknown:
        client.result("job_0123456789abcdef01234567")
    assert unknown.value.status == 404
    with Client(server.url, "tt_not_a_key") as stranger, pytest.raises(ApiError) as unauthorized:
        stranger.list_jobs()
    assert unauthorized.value.status == 401 and "API key" in str(unauthorized.value)


def test_events_rebuild_the_history_and_end_with_the_terminal_job(client: Client) -> None:
    job = client.submit(x=POINTS["x"], y=POINTS["y"], **STEADY, validation_fraction=0.2)
    loss: list[float] = []
    validation: list[float] = []
    statuses = []
    for event in client.events(job.id):
        if isinstance(event, JobProgressEvent):
            assert event.start == len(loss) and event.epochs == STEADY["epochs"]
            loss += event.loss
            validation += event.validation_loss or []
        else:
            assert isinstance(event, Job)
            statuses.append(event.status)
    assert statuses[-1] == "succeeded" and len(statuses) == len(set(statuses))
    result = client.result(job.id)
    assert loss == result.loss_history and validation == result.validation_loss_history


def test_events_resume_after_a_dropped_connection_without_gap_or_repeat(
    server: Server, retries: Callable[[], list[str]]
) -> None:
    proxy = Proxy(server.port)
    proxy.up()
    with Client(f"http://127.0.0.1:{proxy.port}", server.key) as client:
        job = client.submit(x=sine_points(1000)["x"], y=sine_points(1000)["y"], **STEADY)
        loss: list[float] = []
        last = None
        cut = False
        for event in client.events(job.id):
            if isinstance(event, JobProgressEvent):
                assert event.start == len(loss)  # no gap, no repeat across the reconnection
                loss += event.loss
            else:
                last = event
            if loss and not cut:
                proxy.down()  # mid-stream: every connection through the proxy is cut
                proxy.up()
                cut = True
        assert last is not None and last.status == "succeeded"
        assert loss == client.result(job.id).loss_history
    assert any("resuming after epoch" in m for m in retries())
    proxy.down()


def test_wait_times_out_then_cancel_stops_the_job(client: Client) -> None:
    job = client.submit(x=POINTS["x"], y=POINTS["y"], **LONG)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timed_out:
        client.wait(job.id, timeout=1.5)
    assert 1.4 < time.monotonic() - started < 6
    assert timed_out.value.run.id == job.id and timed_out.value.run.status in ("queued", "running")
    with pytest.raises(ApiError) as busy:
        client.delete(job.id)
    assert busy.value.status == 409
    assert client.cancel(job.id).id == job.id
    ended = client.wait(job.id, timeout=30)
    assert ended.status == "cancelled"
    with pytest.raises(ApiError) as conflict:
        client.result(job.id)
    assert conflict.value.status == 409 and "cancelled" in str(conflict.value)
    client.delete(job.id)


class Counting(httpx.HTTPTransport):
    """A transport that counts the requests it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return super().handle_request(request)


def test_wait_asks_the_server_to_hold_its_answer(server: Server) -> None:
    transport = Counting()
    with Client(server.url, server.key, transport=transport) as client:
        job = client.submit(x=POINTS["x"], y=POINTS["y"], **{**STEADY, "epochs": 20_000})
        held = httpx.get(f"{server.url}/v1/jobs/{job.id}", headers={"Prefer": "wait=0", **client_auth(server)})
        before = transport.sent
        assert client.wait(job.id, timeout=60).status == "succeeded"
    if "Preference-Applied" in held.headers:  # a server that holds the answer: one or two requests
        assert transport.sent - before <= 2
    # Otherwise wait() polled with pauses; that it returned the ended job is what counts.


def client_auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.key}"}


def test_a_sweep_end_to_end(client: Client) -> None:
    sweep = client.sweep(
        x=POINTS["x"],
        y=POINTS["y"],
        hyperparameters={"epochs": 60, "batch_size": 8},
        grid={"learning_rate": [0.05, 0.5], "seed": [0, 1]},
    )
    assert isinstance(sweep, Sweep) and sweep.trials.total == 4
    events = list(client.sweep_events(sweep.id))
    assert isinstance(events[-1], Sweep) and events[-1].status == "succeeded"
    progress = [e for e in events if isinstance(e, SweepProgressEvent)]
    assert progress[-1].trials.succeeded == 4 and progress[-1].epochs_completed == 240
    assert client.wait_sweep(sweep.id, timeout=10).status == "succeeded"
    assert sweep.id in [s.id for s in client.list_sweeps().items]

    board = client.trials(sweep.id, order_by="objective").items
    objectives = [t.objective for t in board]
    assert len(board) == 4 and None not in objectives and objectives == sorted(o for o in objectives if o is not None)
    assert [t.index for t in client.all_trials(sweep.id)] == [0, 1, 2, 3]
    best = client.trial(sweep.id, board[0].index)
    assert best.result is not None and len(best.result.loss_history) == 60
    assert best.objective == client.get_sweep(sweep.id).best.objective  # type: ignore[union-attr]
    assert len(client.predict_trial(sweep.id, best.index, [0.0, 1.0])) == 2

    with pytest.raises(ApiError) as finished:
        client.cancel_sweep(sweep.id)
    assert finished.value.status == 409
    client.delete_sweep(sweep.id)
    with pytest.raises(ApiError) as gone:
        client.get_sweep(sweep.id)
    assert gone.value.status == 404


def test_a_halving_sweep_prunes_trials_to_the_jobs_of_their_rungs(client: Client) -> None:
    base = {"epochs": 18, "batch_size": 8, "device": "cpu", "validation_fraction": 0.2}
    draws = {"trials": 9, "seed": 0, "learning_rate": {"min": 0.02, "max": 1.0, "log": True}}
    as_model = client.sweep(
        x=POINTS["x"], y=POINTS["y"], hyperparameters=base, random=draws, halving=Halving(min_epochs=2)
    )
    as_dict = client.sweep(
        x=POINTS["x"],
        y=POINTS["y"],
        hyperparameters=base,
        random=draws,
        halving={"min_epochs": 2, "reduction_factor": 3},
    )
    assert as_model.halving == as_dict.halving == Halving(min_epochs=2, reduction_factor=3, brackets=1)
    ended = client.wait_sweep(as_model.id, timeout=30)
    # Rungs 2, 6, 18: 9 trials keep 3, then 1.
    assert ended.trials.pruned == 8 and ended.trials.succeeded == 1
    trials = list(client.all_trials(as_model.id))
    assert [t.status for t in trials] == [t.status for t in client.all_trials(client.wait_sweep(as_dict.id).id)]
    winner = next(t for t in trials if t.status == "succeeded")
    assert ended.best is not None and ended.best.index == winner.index
    pruned = next(t for t in trials if t.status == "pruned" and t.rung == 6)
    job = client.wait(
        client.submit(x=POINTS["x"], y=POINTS["y"], hyperparameters={**pruned.hyperparameters, "epochs": 6}).id
    )
    assert pruned.result is not None and job.result is not None
    assert pruned.result.parameters == job.result.parameters and pruned.result.final_loss == job.result.final_loss


def test_a_server_that_is_down_is_unreachable_after_the_retries(retries: Callable[[], list[str]]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, "tt_whatever", retries=3, backoff=0.05) as client, pytest.raises(Unreachable) as down:
        client.list_jobs()
    assert str(down.value).startswith(f"cannot reach {url}: ") and "4 tries" in str(down.value)
    assert len(retries()) == 3 and time.monotonic() - started < 5


def test_429_is_retried_after_retry_after(make_server: Callable[..., Server], retries: Callable[[], list[str]]) -> None:
    server = make_server(rate_limit="2/second")
    with Client(server.url, server.key, retries=0) as impatient:
        with pytest.raises(ApiError) as limited:
            for _ in range(5):
                impatient.list_jobs()
        assert limited.value.status == 429
    time.sleep(2)
    started = time.monotonic()
    with Client(server.url, server.key) as client:
        for _ in range(5):
            client.list_jobs()
    assert time.monotonic() - started >= 1  # waited what Retry-After said (>= 1 s)
    assert any("HTTP 429" in m for m in retries())


def via(proxy: Proxy, url: str) -> str:
    """url with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))


def test_503_is_retried_until_the_database_is_back_and_makes_one_job(
    make_server: Callable[..., Server], postgres_url: str, retries: Callable[[], list[str]]
) -> None:
    proxy = Proxy(urlsplit(postgres_url).port or 5432)
    proxy.up()
    server = make_server(database_url=via(proxy, postgres_url))
    with Client(server.url, server.key, retries=10) as client:
        proxy.down()
        with httpx.Client(base_url=server.url, headers=client_auth(server)) as raw:
            assert raw.get("/v1/jobs").status_code == 503  # what the client is up against
        back = threading.Timer(2.0, proxy.up)
        back.start()
        job = client.submit(x=POINTS["x"], y=POINTS["y"], **QUICK)
        back.join()
        assert any("HTTP 503" in m for m in retries())
        assert client.wait(job.id, timeout=60).status == "succeeded"
        assert [j.id for j in client.list_jobs().items] == [job.id]
    proxy.down()


@dataclass
class AnswerLosingProxy:
    """A TCP forwarder that, for the first request starting with each of `lose`, forwards the
    request and then cuts the client's connection as the answer arrives, never relaying it: the
    server did the work, the client never hears of it."""

    target_port: int
    lose: list[bytes]
    port: int = field(default_factory=free_port)
    lost: list[bytes] = field(default_factory=list)

    def up(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def down(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            losing = threading.Event()
            threading.Thread(target=self._requests, args=(client, server, losing), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, losing), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, losing: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                start = next((s for s in self.lose if data.startswith(s) and s not in self.lost), None)
                if start is not None:
                    self.lost.append(start)
                    losing.set()  # before the server can have answered
                server.sendall(data)
        except OSError:
            pass
        _close(client, server)

    def _answers(self, server: socket.socket, client: socket.socket, losing: threading.Event) -> None:
        try:
            while data := server.recv(65536):
                if losing.is_set():
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client, server)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def test_a_submit_delete_or_cancel_whose_answer_was_lost_is_retried_and_done_once(
    server: Server, retries: Callable[[], list[str]]
) -> None:
    key = server.new_key("lossy")  # an owner of its own: its jobs are this test's
    proxy = AnswerLosingProxy(server.port, lose=[b"POST /v1/jobs ", b"DELETE /v1/jobs/", b"POST /v1/jobs/"])
    proxy.up()
    try:
        with Client(f"http://127.0.0.1:{proxy.port}", key) as client, Client(server.url, key) as direct:
            job = client.submit(x=POINTS["x"], y=POINTS["y"], **QUICK)
            assert proxy.lost == [b"POST /v1/jobs "]
            assert [j.id for j in direct.list_jobs().items] == [job.id]  # one job, the one the client got
            assert direct.wait(job.id, timeout=60).status == "succeeded"
            client.delete(job.id)  # deleted by the first try; the retry's 404 means done
            assert proxy.lost == [b"POST /v1/jobs ", b"DELETE /v1/jobs/"]
            assert direct.list_jobs().items == []
            long = client.submit(x=POINTS["x"], y=POINTS["y"], **LONG)
            assert client.cancel(long.id).id == long.id  # cancelled by the first try, whatever the retry finds
            assert len(proxy.lost) == 3 and direct.wait(long.id, timeout=30).status == "cancelled"
    finally:
        proxy.down()
    assert sum("retrying" in m for m in retries()) == 3


def test_the_client_through_celery_workers(celery_stack: Callable[..., Stack]) -> None:
    """The same calls with the Celery executor: the end of a run reaches wait() from the worker
    (through Redis), the history streams from what the worker stored as it trained."""
    stack = celery_stack(workers=1)
    with Client(stack.server.url, stack.server.key) as client:
        job = client.submit(x=POINTS["x"], y=POINTS["y"], **QUICK)
        done = client.wait(job.id, timeout=60)
        assert done.status == "succeeded" and done.result is not None
        streamed = [e for e in client.events(job.id) if isinstance(e, JobProgressEvent)]
        result = client.result(job.id)
        assert [v for e in streamed for v in e.loss] == result.loss_history
        y = client.predict(job.id, [0.0, 1.0])
        assert y == pytest.approx(model.predict(result.parameters.model_dump(), [0.0, 1.0]))
        long = client.submit(x=POINTS["x"], y=POINTS["y"], **LONG)
        client.cancel(long.id)
        assert client.wait(long.id, timeout=30).status == "cancelled"
