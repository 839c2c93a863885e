"""Request body limits, counted as the body streams in (chunked bodies too): its size, and the
time it may stall.

This middleware answers 413 from Content-Length before reading anything, and stops a longer
stream at the limit, with a message that names the limit. (FastAPI 0.165 has max_body_size, whose
413 says only "Content Too Large"; older versions, which pyproject allows, have no limit at all.)

The limit is TINYTRAIN_MAX_BODY_BYTES, but where a big body makes no sense a smaller one answers
first: a predict request's follows from TINYTRAIN_MAX_PREDICT_POINTS, and a request that takes no
body (a read, a delete, a cancel) 64 KiB, not 64 MiB to stream before its 413."""

import re

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Room for a predict request's x values written out in full and pretty-printed
# ("-1.2345678901234567e-308," and an indentation), and for the JSON around them.
PREDICT_BYTES_PER_VALUE = 32
SLACK_BYTES = 64 * 1024
NO_BODY_METHODS = {"GET", "HEAD", "DELETE", "OPTIONS"}
PREDICT = re.compile(r"/v1/(jobs/[^/]+|sweeps/[^/]+/trials/[^/]+)/predict")
CANCEL = re.compile(r"/v1/(jobs|sweeps)/[^/]+/cancel")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, why: str = "") -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes{why}")


class BodyTimeout(HTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body stopped arriving: nothing came for {seconds:g} s")


class BodySizeLimit:
    """Also a body that stops arriving: a receive that waits body_timeout seconds for the next
    piece of an unfinished body is a 408 (uvicorn has no such timeout, and its graceful stop
    waited for such a request without end). Once the body is whole, receive() waits as long as
    it likes: a streaming answer waits in it for the client to leave."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_predict_points: int, body_timeout: float) -> None:
        self.app, self.max_bytes, self.body_timeout = app, max_bytes, body_timeout
        predict_bytes = SLACK_BYTES + PREDICT_BYTES_PER_VALUE * max_predict_points
        why = f" of a predict request (at most {max_predict_points} x values)"
        self.predict = (min(max_bytes, predict_bytes), why)
        self.no_body = (min(max_bytes, SLACK_BYTES), " of a request that takes no body")

    def limit(self, scope: Scope) -> tuple[int, str]:
        """The largest body of this request, and the words the 413 adds to say why."""
        path = scope["path"].rstrip("/")
        if scope["method"] in NO_BODY_METHODS or CANCEL.fullmatch(path):
            return self.no_body
        if PREDICT.fullmatch(path):
            return self.predict
        return self.max_bytes, ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, why = self.limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            status = 413 if declared.isdigit() else 400
            detail = BodyTooLarge(limit, why).detail if status == 413 else "invalid Content-Length"
            await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
            return
        received, whole = 0, False

        async def counted() -> Message:
            nonlocal received, whole
            if whole:
                return await receive()
            try:
                with anyio.fail_after(self.body_timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            whole = message["type"] != "http.request" or not message.get("more_body", False)
            received += len(message.get("body", b""))
            if received > limit:
                # An HTTPException, so FastAPI's body parsing passes it on as the 413 it is.
                raise BodyTooLarge(limit, why)
            return message

        await self.app(scope, counted, send)
