"""/v1/datasets: upload (JSON or CSV), read, list, delete."""

import hashlib

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select

from api import schemas
from api.deps import DatasetDep, DatasetId, IdempotencyKey, OwnerDep, SessionDep, check_id
from api.errors import error, invalid
from api.jsonbody import parse_json
from api.pages import Cursor, Limit, page
from jobs import datasets, tables
from jobs.db import session_scope
from jobs.settings import get_settings
from model.csvdata import CsvError, parse_points

router = APIRouter(prefix="/datasets", tags=["datasets"])

_NUMBER = r"-?[0-9]{1,9}(\.[0-9]{1,9})?"
CSV_PATTERN = rf"^(x,y\r?\n)?({_NUMBER},{_NUMBER}\r?\n)+$"
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": schemas.DatasetIn.model_json_schema()},
        # Documented narrower than accepted (any float syntax, any header): what a client should send.
        "text/csv": {"schema": {"type": "string", "pattern": CSV_PATTERN}, "example": "x,y\n-1,0.2\n0,0.5\n1,0.8\n"},
    },
}


def dataset_out(d: tables.Dataset) -> schemas.Dataset:
    return schemas.Dataset.model_validate(d, from_attributes=True)


def _parse(body: bytes, content_type: str) -> tuple[list[float], list[float], str | None]:
    """(x, y, name) from a JSON or CSV body; 400, 415 or 422 naming the problem."""
    if content_type == "text/csv":
        try:
            x, y = parse_points(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise HTTPException(400, "the CSV body is not UTF-8 text") from exc
        except CsvError as exc:
            raise invalid(("body",), str(exc)) from exc
        return x, y, None
    if content_type != "application/json":
        raise HTTPException(415, "send application/json or text/csv")
    data = parse_json(body)
    try:
        parsed = schemas.DatasetIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc
    return parsed.x, parsed.y, parsed.name


def _store(owner: str, body: bytes, content_type: str, idempotency_key: str | None) -> tuple[tables.Dataset, bool]:
    x, y, name = _parse(body, content_type)
    limit = get_settings().max_points
    if len(x) > limit:
        raise invalid(("body", "x"), f"at most {limit} points")
    row = datasets.build(
        owner=owner,
        x=np.array(x),
        y=np.array(y),
        name=name,
        idempotency_key=idempotency_key,
        request_hash=hashlib.sha256(content_type.encode() + b"\n" + body).hexdigest(),
    )
    with session_scope() as session:
        return datasets.create(session=session, dataset=row)


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
        **error(415, "The body is neither application/json nor text/csv."),
    },
)
async def upload_dataset(
    request: Request,
    response: Response,
    owner: OwnerDep,
    idempotency_key: IdempotencyKey = None,
) -> schemas.Dataset:
    """Store points: JSON {"x": [...], "y": [...], "name": ...} or CSV (x,y per line, optional header)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    dataset, created = await run_in_threadpool(_store, owner, body, content_type, idempotency_key)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset_out(dataset)


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
