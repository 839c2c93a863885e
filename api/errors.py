"""Domain errors to HTTP statuses, in one place; FastAPI's {"detail": ...} shape throughout."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.routing import Route

from api.schemas import ErrorOut
from jobs.errors import Conflict, IdempotencyMismatch, InvalidInput, NotFound, QueueUnavailable, QuotaExceeded
from model import TrainingInputError


def invalid(loc: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 naming the field at loc, shaped like FastAPI's own validation errors."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    # Field, message and type; not the input, which may be huge or not even valid JSON (NaN).
    # (A body that is not JSON never gets here: api/jsonbody.py answers it 400.)
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def _status(code: int, loc: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    """A handler answering code with the exception's message; with loc, in the 422 list shape."""

    async def handler(request: Request, exc: Exception) -> Response:
        detail: object = [{"loc": list(loc), "msg": str(exc), "type": "value_error"}] if loc else str(exc)
        return JSONResponse({"detail": detail}, status_code=code)

    return handler


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    # Starlette names only the first matching route's methods; a path may have several routes.
    allowed = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            allowed |= route.methods
    return JSONResponse(
        {"detail": "method not allowed"}, status_code=405, headers={"Allow": ", ".join(sorted(allowed))}
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": description}
    for code, description in [
        (400, "The body is not valid JSON (or not UTF-8 text)."),
        (401, "No or bad API key."),
        (404, "No such object of this key's owner."),
        (413, "The body is larger than TINYTRAIN_MAX_BODY_BYTES."),
        (429, "Over the per-key rate limit (see Retry-After) or the owner's active-job quota."),
    ]
}


def error(code: int, description: str) -> dict[int | str, dict[str, Any]]:
    """An extra documented error response of one route."""
    return {code: {"model": ErrorOut, "description": description}}


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _status(404))
    app.add_exception_handler(Conflict, _status(409))
    app.add_exception_handler(IdempotencyMismatch, _status(422, ("header", "idempotency-key")))
    app.add_exception_handler(TrainingInputError, _status(422, ("body",)))
    app.add_exception_handler(405, _method_not_allowed)
    app.add_exception_handler(QuotaExceeded, _status(429))
    app.add_exception_handler(OperationalError, _unavailable)
    app.add_exception_handler(InterfaceError, _unavailable)  # a connection the database closed
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(QueueUnavailable, _status(503))


async def _invalid_input(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInput)
    return await _validation(request, invalid(exc.loc, str(exc)))


async def _unavailable(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503)


async def _unstorable(request: Request, exc: Exception) -> Response:
    # A value the database refuses (a NUL byte in PostgreSQL text): validation keeps them out;
    # this is the net under it, never a 500. The driver's message may quote the value: not echoed.
    return JSONResponse({"detail": "the request holds a value the database cannot store"}, status_code=400)
