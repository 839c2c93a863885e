"""The remote commands (submit, jobs, sweeps, datasets, sweep --server) as real subprocesses against
a real serve: what they print, their exit statuses, one-line errors, and the progress bar in a
real terminal (tmux)."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reference import NAMES
from tests.support.cli import BIN, run
from tests.support.data import sine_points
from tests.support.keys import bearer
from tests.support.ports import free_port
from tests.support.server import Server, clean_env

QUICK = ("--epochs", "40", "--batch-size", "8", "--device", "cpu")
LONG = ("--epochs", "1000000", "--batch-size", "1", "--learning-rate", "0.01", "--device", "cpu")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    points = sine_points(200)
    path = tmp_path / "data.csv"
    path.write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in zip(points["x"], points["y"], strict=True)))
    return path


def env_of(server: Server, key: str | None = None) -> dict[str, str]:
    """An environment that names the server and the key (the flags' variables)."""
    return {**clean_env(), "TINYTRAIN_URL": server.url, "TINYTRAIN_API_KEY": key or server.key}


def ok(*args: str, env: dict[str, str], cwd: Path) -> str:
    done = run(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error line of a command that failed as the commands must: status non-zero, nothing on
    stdout, one line on stderr, no traceback."""
    assert done.returncode != 0 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_submit_wait_json_is_the_finished_job_and_its_result(server: Server, data: Path) -> None:
    flags = ("--server", server.url, "--key", server.key)  # the flags, no variables
    done = run("submit", data.name, *QUICK, "--wait", "--json", *flags, cwd=data.parent, env=clean_env())
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)  # only JSON on stdout
    job, result = printed["job"], printed["result"]
    assert job["status"] == "succeeded" and job["hyperparameters"]["epochs"] == 40
    with server.client() as c:
        assert result == c.get(f"/v1/jobs/{job['id']}/result").json()
        assert job == c.get(f"/v1/jobs/{job['id']}").json()


def test_submit_then_every_jobs_command(server: Server, data: Path) -> None:
    env, cwd = env_of(server), data.parent
    job_id = ok("submit", data.name, *QUICK, "--name", "first", env=env, cwd=cwd).strip()
    assert re.fullmatch(r"job_[0-9a-f]{24}", job_id)
    watched = ok("jobs", "watch", job_id, env=env, cwd=cwd).splitlines()
    assert [line.split("=")[0].strip() for line in watched[:7]] == list(NAMES)
    assert watched[7].startswith("final loss = ") and "after 40 epochs" in watched[7]

    shown = json.loads(ok("jobs", "show", job_id, "--json", env=env, cwd=cwd))
    assert (shown["status"], shown["name"]) == ("succeeded", "first")
    assert "status: succeeded" in ok("jobs", "show", job_id, env=env, cwd=cwd)
    assert job_id in ok("jobs", "list", env=env, cwd=cwd)
    listed = json.loads(ok("jobs", "list", "--status", "succeeded", "--limit", "1", "--json", env=env, cwd=cwd))
    assert [j["id"] for j in listed["items"]] == [job_id]
    assert "final loss" in ok("jobs", "result", job_id, env=env, cwd=cwd)
    spaced = json.loads(ok("jobs", "result", job_id, "--max-points", "3", "--json", env=env, cwd=cwd))
    assert spaced["epochs"][0] == 1 and spaced["epochs"][-1] == 40 and len(spaced["loss_history"]) == 3

    # The same file again names the dataset already stored; --dataset uses it directly.
    again = ok("submit", data.name, *QUICK, "--json", env=env, cwd=cwd)
    dataset_id = json.loads(again)["dataset_id"]
    assert dataset_id == shown["dataset_id"]
    third = ok("submit", "--dataset", dataset_id, *QUICK, "--wait", "--json", env=env, cwd=cwd)
    assert json.loads(third)["job"]["dataset_id"] == dataset_id
    assert dataset_id in ok("datasets", "list", env=env, cwd=cwd)
    assert "n_points: 200" in ok("datasets", "show", dataset_id, env=env, cwd=cwd)

    assert ok("jobs", "delete", job_id, env=env, cwd=cwd).strip() == f"deleted {job_id}"
    gone = one_line_error(run("jobs", "show", job_id, env=env, cwd=cwd))
    assert "not found" in gone and "404" in gone


def test_a_cancelled_job_ends_with_exit_status_1(server: Server, data: Path) -> None:
    env, cwd = env_of(server), data.parent
    job_id = ok("submit", data.name, *LONG, env=env, cwd=cwd).strip()
    assert job_id in ok("jobs", "cancel", job_id, env=env, cwd=cwd)
    watched = run("jobs", "watch", job_id, "--json", env=env, cwd=cwd)
    assert watched.returncode == 1
    printed = json.loads(watched.stdout)
    assert printed["job"]["status"] == "cancelled" and printed["result"] is None
    assert f"{job_id} cancelled" in watched.stderr
    again = one_line_error(run("jobs", "cancel", job_id, env=env, cwd=cwd))
    assert "409" in again and "cancelled" in again


def test_a_wrong_key_is_one_line_with_the_servers_detail(server: Server, data: Path) -> None:
    for args in (("jobs", "list"), ("submit", data.name, "--wait")):
        line = one_line_error(run(*args, env=env_of(server, "tt_wrong"), cwd=data.parent))
        assert "a valid API key is required" in line and "401" in line


def test_a_server_that_is_down_is_cannot_reach(data: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {**clean_env(), "TINYTRAIN_URL": url, "TINYTRAIN_API_KEY": "tt_whatever"}
    for args in (("jobs", "list"), ("submit", data.name, "--wait", "--json")):
        assert one_line_error(run(*args, env=env, cwd=data.parent)).startswith(f"error: cannot reach {url}")


def test_bad_input_is_one_line(server: Server, data: Path) -> None:
    env, cwd = env_of(server), data.parent
    assert "batch_size" in one_line_error(run("submit", data.name, "--batch-size", "0", env=env, cwd=cwd))
    assert "epochs" in one_line_error(run("submit", data.name, "--epochs", "0", env=env, cwd=cwd))
    assert "--init" in one_line_error(run("submit", data.name, "--init", "{", env=env, cwd=cwd))
    assert "missing.csv" in one_line_error(run("submit", "missing.csv", env=env, cwd=cwd))
    (cwd / "bad.csv").write_text("x,y\n1,2\n3,abc\n")
    assert "line 3" in one_line_error(run("submit", "bad.csv", env=env, cwd=cwd))
    assert "one of the two" in one_line_error(run("submit", env=env, cwd=cwd))
    assert "--server" in one_line_error(run("jobs", "list", env=clean_env(), cwd=cwd))
    no_key = {**clean_env(), "TINYTRAIN_URL": server.url}
    assert "--key" in one_line_error(run("jobs", "list", env=no_key, cwd=cwd))


def test_sweep_on_the_server_and_every_sweeps_command(server: Server, data: Path) -> None:
    env, cwd = env_of(server), data.parent
    grid = ("--grid", "learning_rate=0.05,0.5", "--grid", "seed=0,1", "--epochs", "30", "--batch-size", "8")
    board = ok("sweep", data.name, *grid, "--wait", "--top", "3", env=env, cwd=cwd).splitlines()
    assert board[0].split() == ["index", "learning_rate", "seed", "final_loss", "status"]
    rows = [line.split() for line in board[1:]]
    assert len(rows) == 3 and all(row[-1] == "succeeded" for row in rows)
    assert [float(r[3]) for r in rows] == sorted(float(r[3]) for r in rows)

    printed = json.loads(ok("sweep", data.name, *grid, "--wait", "--json", env=env, cwd=cwd))
    sweep_id = printed["sweep"]["id"]
    assert printed["sweep"]["status"] == "succeeded" and [t["index"] for t in printed["trials"]] == [0, 1, 2, 3]
    with httpx.Client(base_url=server.url, headers=bearer(server.key)) as c:
        assert printed["trials"] == c.get(f"/v1/sweeps/{sweep_id}/trials").json()["items"]

    assert sweep_id in ok("sweeps", "list", env=env, cwd=cwd)
    assert "trials: 4 (" in ok("sweeps", "show", sweep_id, env=env, cwd=cwd)
    trials = json.loads(ok("sweeps", "trials", sweep_id, "--order-by", "index", "--json", env=env, cwd=cwd))
    assert [t["index"] for t in trials["items"]] == [0, 1, 2, 3]
    assert len(ok("sweeps", "watch", sweep_id, "--top", "2", env=env, cwd=cwd).splitlines()) == 3
    assert "409" in one_line_error(run("sweeps", "cancel", sweep_id, env=env, cwd=cwd))
    assert ok("sweeps", "delete", sweep_id, env=env, cwd=cwd).strip() == f"deleted {sweep_id}"

    queued = ok("sweep", data.name, "--random", "3", "--range", "learning_rate=0.01:1:log", *LONG, env=env, cwd=cwd)
    sweep_id = queued.strip()
    assert sweep_id.startswith("sw_") and sweep_id in ok("sweeps", "cancel", sweep_id, env=env, cwd=cwd)
    assert run("sweeps", "watch", sweep_id, env=env, cwd=cwd).returncode == 1


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_progress_bar_in_a_terminal(server: Server, data: Path) -> None:
    socket = f"tinytrain-test-{os.getpid()}-{free_port()}"
    tmux = ["tmux", "-L", socket]
    command = f"{BIN / 'tinytrain'} submit {data.name} --epochs 200000 --batch-size 1 --learning-rate 0.01 --wait"
    settings = {name: value for name, value in env_of(server).items() if name.startswith("TINYTRAIN_")}
    exports = [arg for name, value in settings.items() for arg in ("-e", f"{name}={value}")]
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "160", "-y", "30", "-c", str(data.parent), *exports]
        + [f"{command}; echo EXIT=$?; sleep 600"],
        check=True,
    )
    frames: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not frames or "EXIT=" not in frames[-1]:
            assert time.monotonic() < deadline, frames[-1] if frames else "no frame"
            time.sleep(0.2)
            frames.append(subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True).stdout)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    # tqdm's bar: "job_... running:  42%|████   | 84000/200000 [00:02<00:03, 40000.00epoch/s, loss=0.0012]"
    bar = re.compile(
        r"job_[0-9a-f]{24} (\w+): +(\d+)%\|.*\| (\d+)/200000 \[[0-9:]+<[0-9:?]+, .*epoch/s, loss=[0-9.e-]+\]"
    )
    seen = [m.groups() for frame in frames for m in [bar.search(frame)] if m]
    assert any(status == "running" and int(percent) < 100 for status, percent, _ in seen), frames
    last = frames[-1]
    assert seen[-1] == ("succeeded", "100", "200000") and "EXIT=0" in last and "final loss = " in last


def test_a_halving_sweep_on_the_server_is_the_local_one(server: Server, data: Path) -> None:
    env, cwd = env_of(server), data.parent
    draws = ("--random", "12", "--range", "learning_rate=0.02:1:log", "--halving", "2:3:2")
    args = (data.name, *draws, *QUICK, "--epochs", "18", "--validation-fraction", "0.2")
    here = json.loads(ok("sweep", *args, "--json", env=clean_env(), cwd=cwd))["trials"]
    there = json.loads(ok("sweep", *args, "--wait", "--json", env=env, cwd=cwd))
    assert there["sweep"]["status"] == "succeeded" and there["sweep"]["halving"] == {
        "min_epochs": 2,
        "reduction_factor": 3,
        "brackets": 2,
    }
    assert there["sweep"]["trials"]["pruned"] == sum(t["status"] == "pruned" for t in here) > 0

    def outcome(t: dict[str, Any]) -> tuple[Any, ...]:
        result = t["result"]
        return t["status"], t["bracket"], t["rung"], t["epochs_completed"], result["parameters"], result["final_loss"]

    assert [outcome(t) for t in there["trials"]] == [outcome(t) for t in here]

    board = ok("sweep", *args, "--wait", "--top", "12", env=env, cwd=cwd).splitlines()
    assert board == ok("sweep", *args, "--top", "12", env=clean_env(), cwd=cwd).splitlines()
    assert board[0].split()[-3:] == ["rung", "epochs", "status"] and board[-1].split()[-1] == "pruned"
    sweep_id = there["sweep"]["id"]
    shown = ok("sweeps", "show", sweep_id, env=env, cwd=cwd)
    assert f"{there['sweep']['trials']['pruned']} pruned)" in shown and "halving: " in shown


def test_bad_halving_on_the_server_is_one_line(server: Server, data: Path) -> None:
    env, cwd = env_of(server), data.parent
    sweep = ("sweep", data.name, "--random", "3", "--epochs", "20", *QUICK[2:])
    unparsed = run(*sweep, "--halving", "3", env=env, cwd=cwd)
    assert unparsed.returncode == 2 and "--halving takes MIN:FACTOR" in one_line_error(unparsed)
    assert "reduction_factor" in one_line_error(run(*sweep, "--halving", "3:1", env=env, cwd=cwd))
    assert "min_epochs 30 is past" in one_line_error(run(*sweep, "--halving", "30:3", env=env, cwd=cwd))
