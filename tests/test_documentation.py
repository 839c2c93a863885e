"""The documents against the code: every setting documented with its default, links that lead
somewhere, a short README."""

import re
import tomllib
from importlib import import_module
from pathlib import Path
from typing import Any

import typer

from jobs.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A row of a table whose first cell names an environment variable: | `NAME` | default | meaning |
ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \|", re.M)
# A variable docker-compose.yml reads: ${NAME}, ${NAME:-default} or ${NAME:?message} (required).
COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*)|(:\?)[^}]*)?\}")


def documented() -> dict[str, str]:
    """The default cell of each variable in docs/configuration.md's tables."""
    rows = ROW.findall((ROOT / "docs" / "configuration.md").read_text())
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a variable is documented twice"
    return {name: cell.strip() for name, cell in rows}


def settings_defaults() -> dict[str, object]:
    """The service's settings: each variable and its default (None: unset)."""
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name.upper()}": field.default for name, field in Settings.model_fields.items()}


def command_variables() -> set[str]:
    """The environment variables the commands' options read (pyproject's console scripts)."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    found: set[str] = set()

    def walk(command: Any) -> None:  # a click Command, of the click typer carries
        for param in command.params:
            envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or [])
            found.update(envvars)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    for target in scripts.values():
        module, name = target.split(":")
        walk(typer.main.get_command(getattr(import_module(module), name)))
    return found


def compose_defaults() -> dict[str, str | None]:
    """The variables docker-compose.yml reads, with their defaults ("required" for ${NAME:?...})."""
    found: dict[str, str | None] = {}
    for name, default, required in COMPOSE_VARIABLE.findall((ROOT / "docker-compose.yml").read_text()):
        found[name] = "required" if required else default or None
    return found


def first_code(cell: str) -> str:
    """The first `code` of a table cell."""
    match = re.search(r"`([^`]*)`", cell)
    assert match, f"no `value` in {cell!r}"
    return match.group(1)


def test_configuration_documents_every_setting_and_only_those() -> None:
    expected = set(settings_defaults()) | command_variables() | set(compose_defaults())
    names = set(documented())
    assert not expected - names, f"not in docs/configuration.md: {sorted(expected - names)}"
    assert not names - expected, f"in docs/configuration.md but read by nothing: {sorted(names - expected)}"


def test_configuration_gives_the_code_s_defaults() -> None:
    cells = documented()
    for name, default in settings_defaults().items():
        if default is None:
            assert cells[name].startswith("unset"), (name, cells[name])
        elif isinstance(default, bool):
            assert first_code(cells[name]) == str(default).lower(), (name, cells[name], default)
        elif isinstance(default, int | float):
            assert float(first_code(cells[name])) == default, (name, cells[name], default)
        elif isinstance(default, list):  # written as the variable is: comma-separated
            assert first_code(cells[name]) == ",".join(f"{v:g}" for v in default), (name, cells[name], default)
        else:
            assert first_code(cells[name]) == str(default), (name, cells[name], default)
    for name in command_variables():
        assert cells[name].startswith("unset"), (name, cells[name])
    for name, value in compose_defaults().items():
        if value == "required":
            assert cells[name] == "required", (name, cells[name])
        else:
            assert first_code(cells[name]) == value, (name, cells[name], value)


def anchors(document: Path) -> set[str]:
    """The anchors of a document's headings, as GitHub makes them."""
    headings = re.findall(r"^#+ (.+)$", document.read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_link_between_documents_leads_somewhere_inside_the_repository() -> None:
    for document in DOCUMENTS:
        text = re.sub(r"^```.*?^```$", "", document.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an address elsewhere
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            assert linked.is_relative_to(ROOT), f"{document.name} links outside the repository: {target}"
            assert linked.exists(), f"{document.name} links to {target}, which does not exist"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{document.name} links to {target}: no such heading"


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150
