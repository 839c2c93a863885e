"""Domain errors to HTTP statuses, in one place; FastAPI's {"detail": ...} shape throughout."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError

from jobs.errors import Conflict, IdempotencyMismatch, NotFound, QuotaExceeded
from model import TrainingInputError


def invalid(loc: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 naming the field at loc, shaped like FastAPI's own validation errors."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse({"detail": "the request body is not valid JSON"}, status_code=400)
    # Field, message and type; not the input, which may be huge or not even valid JSON (NaN).
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


def _status(code: int):  # type: ignore[no-untyped-def]
    async def handler(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handler


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _status(404))
    app.add_exception_handler(Conflict, _status(409))
    app.add_exception_handler(IdempotencyMismatch, _status(422))
    app.add_exception_handler(TrainingInputError, _status(422))
    app.add_exception_handler(QuotaExceeded, _status(429))
    app.add_exception_handler(OperationalError, _unavailable)


async def _unavailable(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": "the database is unavailable; try again shortly"}, status_code=503)
