"""One owner never costs another, and no byte of a request is a 500: header bytes of any
encoding, values at the edge of a dtype or of the database's integers, names a plotting library
would read as markup. Real `tinytrain serve` processes on SQLite and PostgreSQL."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from tests.support.client import wait_for
from tests.support.server import Server

POINTS = {"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0, 1.0, 0.0, 1.0]}
QUICK = {"batch_size": 2, "epochs": 30, "validation_fraction": 0.25}
# Every byte a header value may hold that is not an ASCII digit, and some that int() reads as
# digits though they are none (latin-1's superscripts, and the UTF-8 of Arabic-Indic three).
ODD_BYTES = [bytes([b]) for b in range(0x21, 0x100) if not 0x30 <= b <= 0x39 and b not in b'"\x7f']
ODD_VALUES = [b"\xb2", b"1\xb9", b"\xd9\xa3", b"\xef\xbc\x91", b"1" * 200, b"9" * 11, b"-0", b"0x1", b"1 1"]


@pytest.fixture(scope="module")
def client(each_database_server: Server) -> Iterator[httpx.Client]:
    with each_database_server.client() as c:
        yield c


@pytest.fixture(scope="module")
def finished(client: httpx.Client) -> dict[str, Any]:
    """A succeeded job with a validation split, for the reads to provoke."""
    r = client.post("/v1/jobs", json={"dataset": POINTS, "hyperparameters": QUICK})
    assert r.status_code == 202, r.text
    return wait_for(client, r.json()["id"], "succeeded")


def test_header_bytes_of_any_encoding_are_a_400_never_a_500(client: httpx.Client, finished: dict[str, Any]) -> None:
    path = f"/v1/jobs/{finished['id']}"
    for i, value in enumerate([*ODD_BYTES, *ODD_VALUES]):
        body = {"dataset": POINTS, "hyperparameters": QUICK}
        prefer = {b"Prefer": b"wait=" + value}
        waits = [client.get(path, headers=prefer), client.post("/v1/jobs", json=body, headers=prefer)]
        for r in waits:
            assert r.status_code == 400 and "Prefer: wait" in r.json()["detail"], (value, r.status_code, r.text)
        with client.stream("GET", f"{path}/events", headers={b"Last-Event-ID": value}) as r:
            assert r.status_code == 400, (value, r.status_code)
        # Not a number by contract: kept as text, and a retry with it is the same request.
        key = {b"Idempotency-Key": (b"%d:" % i + value)[:200]}
        first, again = (client.post("/v1/jobs", json=body, headers=key) for _ in range(2))
        assert first.status_code == 202 and again.status_code == 200, (value, first.text, again.text)
        assert first.json()["id"] == again.json()["id"]
    assert client.get(path, headers={"Prefer": "wait=0"}).headers["Preference-Applied"] == "wait=0"


LAST_EVENT_IDS = ["0", "29", "30", "31", "2147463648", "2147483648", "4294967296", "9999999999"]


@pytest.mark.parametrize("last_event_id", LAST_EVENT_IDS)
def test_any_last_event_id_resumes_or_ends_the_stream_cleanly(
    client: httpx.Client, finished: dict[str, Any], last_event_id: str
) -> None:
    with connect_sse(client, "GET", f"/v1/jobs/{finished['id']}/events", headers={"Last-Event-ID": last_event_id}) as s:
        assert s.response.status_code == 200
        events = list(s.iter_sse())
    progress = [e.json() for e in events if e.event == "progress"]
    sent = min(int(last_event_id), 30)
    assert sum(len(p["loss"]) for p in progress) == 30 - sent
    assert events[-1].event == "status" and events[-1].json()["status"] == "succeeded"


def test_any_slice_of_a_result_is_a_200_and_empty_where_it_holds_no_epoch(
    client: httpx.Client, finished: dict[str, Any]
) -> None:
    path = f"/v1/jobs/{finished['id']}/result"
    whole = client.get(path).json()["loss_history"]
    edge = 2**31
    for start, stop, expected in [
        (10, 5, 0),
        (10, 10, 0),
        (29, 1, 0),
        (0, 1, 1),
        (29, 30, 1),
        (29, edge, 1),
        (30, edge, 0),
        (edge, edge, 0),
        (edge - 1, None, 0),
        (edge, 1, 0),
        (0, edge, 30),
    ]:
        params = {"start": start} if stop is None else {"start": start, "stop": stop}
        r = client.get(path, params=params)
        assert r.status_code == 200, (start, stop, r.text)
        got = r.json()
        assert got["loss_history"] == whole[start : stop if stop is not None else None], (start, stop)
        assert len(got["loss_history"]) == len(got["epochs"]) == expected
        r = client.get(path, params={**params, "max_points": 2})
        assert r.status_code == 200 and len(r.json()["loss_history"]) == min(2, expected), (start, stop)
