"""What a newcomer meets first: the bare address of a running service."""

import httpx

from tests.support.server import Server


def test_root_redirects_to_the_docs(shared_server: Server) -> None:
    response = httpx.get(f"{shared_server.url}/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["Location"] == "/docs"
