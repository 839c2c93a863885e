"""/v1/datasets: upload (JSON or CSV), read, list, delete."""

import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import numpy as np
import numpy.typing as npt
import pydantic_core
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select
from starlette.responses import StreamingResponse

from api import schemas
from api.deps import DatasetDep, DatasetId, IdempotencyKey, OwnerDep, SessionDep, check_id, not_found
from api.errors import error, invalid
from api.jsonbody import check_length, parse_json
from api.pages import Cursor, Limit, page
from api.routes.jobs import json_numbers
from jobs import datasets, storage, tables
from jobs.db import new_session, session_scope
from jobs.settings import get_settings
from model.csvdata import CsvError, parse_points

router = APIRouter(prefix="/datasets", tags=["datasets"])

# A CSV body comes as text/csv or as application/octet-stream: the one raw body that OpenAPI client
# generators send (a file's bytes). Only the latter is in the document: a generator warns that it
# cannot send text/csv and leaves the CSV upload out of the client.
CSV_TYPES = ("text/csv", "application/octet-stream")
_CSV_BODY = {
    "schema": {
        "type": "string",
        "format": "binary",
        "description": "CSV: x,y per line, an optional header line; the same bytes as text/csv.",
    },
    "example": "x,y\n-1,0.2\n0,0.5\n1,0.8\n",
}
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": schemas.DatasetIn.model_json_schema()},
        "application/octet-stream": _CSV_BODY,
    },
}
UploadName = Annotated[
    schemas.Name | None,
    Query(
        description="The dataset's name; a CSV body has no place for one. With a JSON body that has a "
        "name too, the two must be the same (else 422)."
    ),
]


def dataset_out(d: tables.Dataset) -> schemas.Dataset:
    return schemas.Dataset.model_validate(d, from_attributes=True)


def _parse(body: bytes, content_type: str, limit: int) -> tuple[datasets.Array, datasets.Array, str | None]:
    """(x, y, name) from a JSON or CSV body; 400, 415 or 422 naming the problem. Points over the
    limit (more than it, not all of them) are measured before any list of Python floats is made."""
    if content_type == "text/csv":
        points = datasets.read_csv(body, limit)
        if points is not None:  # plain numbers, the usual CSV, read by numpy
            return *points, None
        try:
            x, y = parse_points(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "the CSV body is not UTF-8 text") from exc
        except CsvError as exc:
            raise invalid(("body",), str(exc)) from exc
        return np.array(x), np.array(y), None
    if content_type != "application/json":
        raise HTTPException(415, "send application/json, or CSV as text/csv or application/octet-stream")
    data = parse_json(body)
    for name in ("x", "y"):
        check_length(data, (name,), limit, "points")
    try:
        parsed = schemas.DatasetIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
    del data  # its lists, as large as the body, are not needed any more
    return np.array(parsed.x), np.array(parsed.y), parsed.name


def _store(
    owner: str, body: bytes, content_type: str, idempotency_key: str | None, query_name: str | None
) -> tuple[tables.Dataset, bool]:
    limit = get_settings().max_points
    x, y, name = _parse(body, content_type, limit)
    if x.size > limit:
        raise invalid(("body", "x"), f"at most {limit} points")
    if query_name is not None:
        if name is not None and name != query_name:
            raise invalid(("query", "name"), "differs from the name in the body: give one, or the same in both")
        name = query_name
    # Without a query name, the hash of before: a retry of an upload made before there was one still matches.
    query = b"" if query_name is None else b"?name=" + query_name.encode()
    row = datasets.build(
        owner=owner,
        x=x,
        y=y,
        name=name,
        idempotency_key=idempotency_key,
        request_hash=hashlib.sha256(content_type.encode() + query + b"\n" + body).hexdigest(),
    )
    with session_scope() as session:
        return storage.store_dataset(session=session, dataset=row, limit=get_settings().max_storage_bytes_per_owner)


@router.post(
    "",
    status_code=201,
    response_model=schemas.Dataset,
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        200: {
            "model": schemas.Dataset,
            "description": "The dataset an earlier request with this Idempotency-Key created.",
        },
        **error(415, "The body is neither application/json nor CSV (application/octet-stream or text/csv)."),
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    owner: OwnerDep,
    idempotency_key: IdempotencyKey = None,
    name: UploadName = None,
) -> schemas.Dataset:
    """Store points: JSON {"x": [...], "y": [...], "name": ...}, or CSV (x,y per line, an optional
    header line) sent as `application/octet-stream` or `Content-Type: text/csv`, the same bytes
    either way. The `name` query parameter names a CSV dataset (or a JSON one)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in CSV_TYPES:
        content_type = "text/csv"  # one request, whichever type it came as (its idempotency hash too)
    dataset, created = await run_in_threadpool(_store, owner, body, content_type, idempotency_key, name)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset_out(dataset)


def _parse_csv(body: bytes) -> bytes:
    limit = get_settings().max_points
    x, y, _ = _parse(body, "text/csv", limit)
    if x.size > limit:
        raise invalid(("body",), f"at most {limit} points")
    return pydantic_core.to_json({"x": x.tolist(), "y": y.tolist()})


@router.post(
    "/parse",
    response_model=schemas.Points,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": _CSV_BODY},
        }
    },
    responses={
        422: {
            "description": "A line that is no point (the message names it), no point at all, or over the points limit.",
            # The component FastAPI's own 422s use: there is one in the document, whatever else.
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        },
        **error(400, "The body is not UTF-8 text."),
    },
)
async def parse_csv(request: Request, owner: OwnerDep) -> Response:
    """The points of a CSV body (as an upload reads it: x,y per line, an optional header line),
    stored nowhere: a 422 names the line at fault. The dashboard checks a file with it before a
    job or sweep is sent with the points inline."""
    body = await request.body()
    return Response(await run_in_threadpool(_parse_csv, body), media_type="application/json")


@router.get("")
def list_datasets(
    owner: OwnerDep,
    session: SessionDep,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> schemas.Page[schemas.Dataset]:
    """The owner's datasets, newest first; pass next_cursor to get the next page."""
    query = select(tables.Dataset).where(tables.Dataset.owner == owner)
    return page(session, query, tables.Dataset, limit, cursor, dataset_out)


@router.get("/{dataset_id}")
async def get_dataset(dataset: DatasetDep) -> schemas.Dataset:
    return dataset_out(dataset)


@router.delete("/{dataset_id}", status_code=204, responses=error(409, "A queued or running job uses it."))
def delete_dataset(dataset_id: DatasetId, owner: OwnerDep, session: SessionDep) -> Response:
    """Delete a dataset; 409 while a queued or running job uses it."""
    datasets.remove(session=session, owner=owner, dataset_id=check_id("ds", dataset_id))
    return Response(status_code=204)


PlotPoints = Annotated[
    int | None,
    Query(
        ge=2, le=1_000_000, description="At most this many points, evenly spaced in stored order (first and last in)."
    ),
]


# Points per read of a dataset's points: a MiB of floats, read and encoded in a worker thread,
# one piece at a time in this process whoever asks (the encoding holds the GIL, which the event
# loop waits for), so that four clients of a 10M-point dataset hold neither the event loop nor
# the memory of its whole JSON (80 MB) and lists (480 MB).
POINTS_PIECE = 131_072
_READS = anyio.CapacityLimiter(1)


Picked = npt.NDArray[np.int64] | None  # the indices of the points to send; None: all


def _encoded(dataset: tables.Dataset, axis: int, lo: int, hi: int, picked: Picked) -> bytes | None:
    """Points [lo, hi) of x (axis 0) or y (1) as comma-separated JSON numbers (of picked, those
    it holds only), or None if the dataset was deleted."""
    n = dataset.n_points
    with new_session() as session:
        values = datasets.read_values(session=session, dataset=dataset, start=axis * n + lo, stop=axis * n + hi)
    if values is None:
        return None
    if picked is not None:
        values = values[picked[(picked >= lo) & (picked < hi)] - lo]
    return b"".join(json_numbers(values))


@router.get("/{dataset_id}/points", response_model=schemas.Points)
async def get_points(dataset: DatasetDep, max_points: PlotPoints = None) -> Response:
    """The points in their stored order, or at most max_points of them evenly spaced (for plots)."""
    n = dataset.n_points
    picked = datasets.evenly_spaced(n, max_points) if max_points is not None and n > max_points else None
    spans = [(lo, min(lo + POINTS_PIECE, n)) for lo in range(0, n, POINTS_PIECE)]

    async def piece(axis: int, lo: int, hi: int) -> bytes:
        encoded = await anyio.to_thread.run_sync(_encoded, dataset, axis, lo, hi, picked, limiter=_READS)
        if encoded is None:
            raise not_found("ds", dataset.id)
        return encoded

    # Read before the answer starts: a dataset deleted since the owner's check is a 404.
    first = await piece(0, *spans[0])

    async def body() -> AsyncIterator[bytes]:
        for axis, name in enumerate((b'{"x":[', b'],"y":[')):
            yield name
            for k, (lo, hi) in enumerate(spans):
                encoded = first if axis == k == 0 else await piece(axis, lo, hi)
                # The first piece of each holds the first point; a later one, maybe none picked.
                yield (b"," if k and encoded else b"") + encoded
        yield b"]}"

    return StreamingResponse(body(), media_type="application/json")
