"""Security headers: `nosniff` on every answer, and the pages where people paste keys (/docs,
/redoc) cannot be framed and run only the scripts they were served with.

The docs pages are fastapi-offline's HTML: Swagger UI starts from one inline script, which the
policy admits by its hash (computed from the page as it is sent, so a new version's page still
runs), never by 'unsafe-inline'. Both libraries set styles inline, and ReDoc's search runs in a
worker made from a blob: the policy allows those and nothing else. The dashboard's pages carry
a stricter policy of their own (api/routes/ui.py), which this keeps."""

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc"}
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_policy(html: bytes) -> str:
    """The Content-Security-Policy of a docs page: its own inline scripts, by hash."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"] in DOCS
        start: Message = {}
        body: list[bytes] = []

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).setdefault("X-Content-Type-Options", "nosniff")
                if docs:  # held until the page is whole: its policy names its scripts
                    start.update(message)
                    return
            elif docs and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                page = b"".join(body)
                headers = MutableHeaders(scope=start)
                headers["Content-Security-Policy"] = docs_policy(page)
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                await send(start)
                message = {"type": "http.response.body", "body": page}
            await send(message)

        await self.app(scope, receive, sending)
