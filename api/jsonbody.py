"""JSON request bodies parsed by pydantic-core's parser: what is not JSON is a 400.

A large body (over INLINE_BYTES) is parsed in a worker thread, and validated there into its
route's model: both grow with the body, and on the event loop they would stall every other
request meanwhile. Lists with a limit of their own (a dataset's points, a predict request's x
values) are measured before validation copies them. A sweep's grid over the trial limit is
answered from the body's first MiB, before the rest is received."""

import math
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import HTTPException, Request, Response, params
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from api import schemas
from api.errors import invalid
from jobs.settings import get_settings

# Below this a body parses in a few milliseconds: less than a hop to a thread is worth.
INLINE_BYTES = 1024 * 1024


def parse_json(raw: bytes) -> Any:
    """The JSON value of raw; 400 if it is not JSON (or nests too deep, or has a huge integer).

    NaN, Infinity and 1e400 parse, so that validation answers 422 naming the field."""
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError as exc:
        raise HTTPException(400, f"the request body is not valid JSON: {exc}") from exc


def check_length(data: Any, path: tuple[str, ...], limit: int, items: str) -> None:
    """A 422 at body.path when the parsed body data holds a list there of more than limit items."""
    for name in path:
        data = data.get(name) if isinstance(data, dict) else None
    if isinstance(data, list) and len(data) > limit:
        raise invalid(("body", *path), f"at most {limit} {items}")


def _check_lengths(model: type[BaseModel], data: Any) -> None:
    settings = get_settings()
    if issubclass(model, schemas.RunIn):
        for name in ("x", "y"):
            check_length(data, ("dataset", name), settings.max_points, "points")
    if issubclass(model, schemas.PredictIn):
        check_length(data, ("x",), settings.max_predict_points, "values")


def _glance(head_bytes: bytes) -> None:
    """A 422 for a sweep whose grid is over the trial limit in the body's first MiB already (a
    grid of a million seeds): receiving and parsing the rest would hold the event loop and the
    GIL for as long as the body is large. The first MiB is parsed as a prefix of JSON: what it
    shows is in the body; a list it cuts holds at least what it shows."""
    try:
        head = pydantic_core.from_json(head_bytes, allow_partial=True)
    except ValueError:
        return  # the whole parse says what is wrong
    grid = head.get("grid") if isinstance(head, dict) else None
    if isinstance(grid, dict):
        trials = math.prod(len(v) if isinstance(v, list) else 1 for v in grid.values())
        limit = get_settings().max_trials
        if trials > limit:
            raise invalid(("body", "grid"), f"at least {trials} trials is over the limit of {limit}")


def parse_model(raw: bytes, model: type[BaseModel]) -> BaseModel:
    """raw as an instance of model: 400 if it is not JSON, 422 naming the fields as FastAPI's would."""
    data = parse_json(raw)
    _check_lengths(model, data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from exc


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of this type as JSON (application/json or application/*+json)."""
    media = (content_type or "").split(";")[0].strip().lower()
    main, _, sub = media.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


class _JSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json

    async def glanced_body(self) -> bytes:
        """The whole body, as body() gives it, after _glance has seen its first MiB (if it has one)."""
        chunks: list[bytes] = []
        received, glanced = 0, False
        async for chunk in self.stream():
            chunks.append(chunk)
            received += len(chunk)
            if not glanced and received > INLINE_BYTES:
                glanced = True
                await run_in_threadpool(_glance, b"".join(chunks)[:INLINE_BYTES])
        self._body = b"".join(chunks)  # where Request.body() keeps the body it read
        return self._body


def _body_params(dependant: Dependant) -> list[Any]:
    return [*dependant.body_params, *(p for d in dependant.dependencies for p in _body_params(d))]


class JSONRoute(APIRoute):
    """A route whose JSON body is parsed by parse_json; a large one in a worker thread."""

    def body_model(self) -> type[BaseModel] | None:
        """The model the whole body validates into, if the route has one: its one body parameter
        (its dependencies' included), not embedded in an object and not a form."""
        fields = _body_params(self.dependant)
        if len(fields) != 1 or getattr(fields[0].field_info, "embed", False):
            return None
        if isinstance(fields[0].field_info, params.Form):
            return None
        model = fields[0].field_info.annotation
        return model if isinstance(model, type) and issubclass(model, BaseModel) else None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = self.body_model()

        async def route_handler(request: Request) -> Response:
            request = _JSONRequest(request.scope, request.receive)
            if model is not None and _is_json(request.headers.get("content-type")):
                try:
                    raw = await (request.glanced_body() if issubclass(model, schemas.SweepIn) else request.body())
                except ClientDisconnect:  # gone: FastAPI's reading of the body answers it
                    return await handler(request)
                if len(raw) > INLINE_BYTES:
                    # FastAPI takes the instance as it is: a model instance is not validated again.
                    request._json = await run_in_threadpool(parse_model, raw, model)
            return await handler(request)

        return route_handler
