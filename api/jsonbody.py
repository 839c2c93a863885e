"""JSON request bodies parsed by pydantic-core's parser: about 9x faster than json.loads on the
arrays of numbers this service receives (a 2,000-float job: 70 us instead of 650 us)."""

from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute


def parse_json(raw: bytes) -> Any:
    """The JSON value of raw; 400 if it is not JSON (or nests too deep, or has a huge integer).

    NaN, Infinity and 1e400 parse, so that validation answers 422 naming the field."""
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=True)
    except ValueError as exc:
        raise HTTPException(400, f"the request body is not valid JSON: {exc}") from exc


class _JSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class JSONRoute(APIRoute):
    """A route whose JSON body is parsed by parse_json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(_JSONRequest(request.scope, request.receive))

        return route_handler
