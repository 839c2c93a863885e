"""The client installed the way docs/client.md says (`pip install` of this repository, no extras)
into a fresh venv: none of the service's packages come with it, and the remote commands and
tinytrain.client work against a real serve (run from the project's own venv); the local commands
say in one line what to install."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import Server, clean_env

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = ("torch", "numba", "celery", "sqlalchemy", "fastapi", "uvicorn", "matplotlib")
QUICK = ("--epochs", "40", "--batch-size", "8", "--device", "cpu")


def light_env(**settings: str) -> dict[str, str]:
    """An environment in which nothing of this checkout or of the project's venv is importable."""
    env = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return {**env, **settings}


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a new venv with this repository pip-installed in it, as a user would.

    From a copy of the files git has (tracked, or new and not ignored): the build writes into the
    tree it builds, and this checkout's .venv and caches are no part of the package."""
    tmp = tmp_path_factory.mktemp("light")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    source = tmp / "tinytrain"
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():  # a file deleted in the work tree is still listed until committed
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(source)],
        env=light_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return venv / "bin"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("x,y\n" + "".join(f"{i / 10 - 2},{abs(i / 10 - 2) - 1}\n" for i in range(41)))
    return path


def run(light: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(light / "tinytrain"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_none_of_the_services_packages_is_installed(light: Path, tmp_path: Path) -> None:
    listed = subprocess.run(
        [str(light / "pip"), "list", "--format=json", "--disable-pip-version-check"],
        env=light_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert "tinytrain" in installed and not installed & set(SERVICE_PACKAGES), sorted(installed)
    found = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    done = subprocess.run(
        [str(light / "python"), "-c", found, *SERVICE_PACKAGES],
        cwd=tmp_path,
        env=light_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_the_remote_commands_against_a_real_serve(light: Path, server: Server, data: Path) -> None:
    env, cwd = light_env(TINYTRAIN_URL=server.url, TINYTRAIN_API_KEY=server.key), data.parent

    done = run(light, "submit", data.name, *QUICK, "--wait", "--json", cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)["job"]
    assert job["status"] == "succeeded" and job["hyperparameters"]["epochs"] == 40

    listed = run(light, "jobs", "list", "--json", cwd=cwd, env=env)
    assert listed.returncode == 0, listed.stderr
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)["items"]]
    shown = run(light, "jobs", "show", job["id"], cwd=cwd, env=env)
    assert shown.returncode == 0 and "status: succeeded" in shown.stdout, shown.stderr

    grid = ("--grid", "learning_rate=0.1,0.5", "--epochs", "20", "--batch-size", "8")
    swept = run(light, "sweep", data.name, *grid, "--wait", "--top", "2", cwd=cwd, env=env)
    assert swept.returncode == 0, swept.stderr
    assert swept.stdout.splitlines()[0].split() == ["index", "learning_rate", "final_loss", "status"]
    sweeps = run(light, "sweeps", "list", "--json", cwd=cwd, env=env)
    assert sweeps.returncode == 0 and len(json.loads(sweeps.stdout)["items"]) == 1, sweeps.stderr

    datasets = run(light, "datasets", "list", "--json", cwd=cwd, env=env)
    assert datasets.returncode == 0, datasets.stderr
    assert [d["id"] for d in json.loads(datasets.stdout)["items"]] == [job["dataset_id"]]


def test_the_python_client_against_a_real_serve(light: Path, server: Server, tmp_path: Path) -> None:
    code = """
import sys
from tinytrain.client import Client

with Client(sys.argv[1], sys.argv[2]) as client:
    job = client.submit(x=[0, 1, 2, 3], y=[0, 1, 0, 1], epochs=30, batch_size=2, device="cpu")
    job = client.wait(job.id, timeout=120)
    print(job.status, len(client.result(job.id).loss_history), client.predict(job.id, [0.5])[0] is not None)
print(sorted(m for m in ("api", "jobs", "model", "worker", "pydantic_settings") if m in sys.modules))
"""
    done = subprocess.run(
        [str(light / "python"), "-c", code, server.url, server.key],
        cwd=tmp_path,
        env=light_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["succeeded 30 True", "[]"]


@pytest.mark.parametrize(
    "command", [["serve"], ["train", "data.csv"], ["worker"], ["sweep", "data.csv"], ["keys", "list"]]
)
def test_the_local_commands_say_what_to_install(light: Path, data: Path, command: list[str]) -> None:
    done = run(light, *command, cwd=data.parent, env=light_env())
    assert done.returncode == 2 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'tinytrain[server]'" in lines[0], done.stderr
    assert lines[0].startswith(f"error: tinytrain {command[0]} needs the service's packages"), lines[0]
