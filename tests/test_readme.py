"""The README's first request and its client example, run as written against a real serve: what
the README shows must be what they give today."""

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.support.server import Server

README = Path(__file__).resolve().parents[1] / "README.md"
# What the README writes for the service's address and for the key serve printed.
URL, KEY = "http://127.0.0.1:8000", "tt_..."


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in that language, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", README.read_text(), flags=re.M | re.S)


def as_shown(shown: Any, actual: Any, where: str = "answer") -> None:
    """actual has everything shown: the keys shown (it may have more), strings ending in "..." as a
    prefix, and numbers with a decimal point or exponent to as many significant digits as shown."""
    if isinstance(shown, dict):
        assert isinstance(actual, dict), (where, actual)
        for key, value in shown.items():
            assert key in actual, f"{where}.{key} is shown but not in the answer {actual}"
            as_shown(value, actual[key], f"{where}.{key}")
    elif isinstance(shown, str) and shown.endswith("..."):
        assert isinstance(actual, str) and actual.startswith(shown[:-3]), (where, shown, actual)
    elif isinstance(shown, Decimal):
        digits = len(shown.as_tuple().digits)
        assert Decimal(f"{actual:.{digits}g}") == shown, f"{where}: shown {shown}, the answer has {actual}"
    else:
        assert shown == actual, f"{where}: shown {shown!r}, the answer has {actual!r}"


def shown_answer() -> dict[str, Any]:
    """The Job the README shows after its first request (the first JSON block)."""
    answer: dict[str, Any] = json.loads(blocks("json")[0], parse_float=Decimal)
    return answer


def test_the_first_request_answers_what_the_readme_shows(server: Server) -> None:
    request = next(block for block in blocks("sh") if "curl" in block)
    script = request.replace(URL, server.url).replace(KEY, server.key)
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    as_shown(shown_answer(), json.loads(done.stdout))


def test_the_client_example_prints_the_same_parameters(server: Server) -> None:
    example = next(block for block in blocks("python") if "from tinytrain.client import Client" in block)
    script = example.replace(URL, server.url).replace(KEY, server.key)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = {name: float(value) for name, value in re.findall(r"(\w+)=(-?[\d.e+-]+)", done.stdout)}
    as_shown(shown_answer()["result"]["parameters"], printed, "printed parameters")
