"""/docs and /redoc render in a real browser with no internet: their assets come from the service."""

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def rendered_dom(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=8000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def test_docs_render_every_operation_from_local_assets(shared_server: Server, tmp_path: Path) -> None:
    page = httpx.get(f"{shared_server.url}/docs").text
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
    assert assets and all(a.startswith("/") for a in assets), assets  # nothing from a CDN
    dom = rendered_dom(f"{shared_server.url}/docs", tmp_path / "docs")
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/result", "/v1/datasets", "/healthz"} <= paths


def test_redoc_renders_the_operations(shared_server: Server, tmp_path: Path) -> None:
    page = httpx.get(f"{shared_server.url}/redoc").text
    assert all(a.startswith("/") for a in re.findall(r'src="([^"]+\.js)"', page))
    dom = rendered_dom(f"{shared_server.url}/redoc", tmp_path / "redoc")
    assert "Queue a training job" in dom and "Submit Job" in dom


def test_every_request_body_has_an_example(shared_server: Server) -> None:
    spec = httpx.get(f"{shared_server.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody")
            if body is None:
                continue
            for media, content in body["content"].items():
                schema = content["schema"]
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].split("/")[-1]]
                assert "example" in content or "examples" in schema, f"{method} {path} {media}"


def test_pages_that_take_keys_cannot_be_framed_and_every_answer_is_nosniff(shared_server: Server) -> None:
    with shared_server.client() as c:
        for path in ("/docs", "/docs/oauth2-redirect", "/redoc", "/ui/"):
            r = c.get(path)
            assert r.status_code == 200, path
            policy = r.headers["Content-Security-Policy"]
            assert (
                "frame-ancestors 'none'" in policy
                and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
            )
            assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff", path
        bad_key = {"Authorization": "Bearer tt_" + "x" * 43}
        answers = [
            c.get("/openapi.json"),
            c.get("/healthz"),
            c.get("/v1/jobs"),
            c.get("/v1/jobs/job_nope"),  # 404
            c.get("/v1/jobs", params={"limit": 0}),  # 422
            c.post("/v1/jobs", content=b"{", headers={"Content-Type": "application/json"}),  # 400
            c.post("/v1/jobs", content=b"x" * 300_000),  # 413
            c.get("/v1/jobs", headers=bad_key),  # 401
            c.put("/v1/jobs"),  # 405
        ]
        assert [r.status_code for r in answers] == [200, 200, 200, 404, 422, 400, 413, 401, 405]
        for r in answers:
            assert r.headers["X-Content-Type-Options"] == "nosniff", (r.request.url, r.status_code)
