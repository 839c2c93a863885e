"""Request body size limit, counted as the body streams in (chunked bodies too).

This middleware answers 413 from Content-Length before reading anything, and stops a longer
stream at the limit, with a message that names the limit. (FastAPI 0.165 has max_body_size, whose
413 says only "Content Too Large"; older versions, which pyproject allows, have no limit at all.)"""

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            detail = BodyTooLarge(self.max_bytes).detail if status == 413 else "invalid Content-Length"
            await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException, so FastAPI's body parsing passes it on as the 413 it is.
                raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted, send)
