"""`tinytrain sweep --search tpe` as real subprocesses: locally with the fleet engine, and with
--server against a real serve, which ask the same trials with the same results."""

import json
from pathlib import Path

import pytest

from tests.support.cli import run
from tests.support.data import sine_points
from tests.support.server import Server, clean_env

SEARCH = (
    "--search", "tpe", "--trials", "7", "--batch", "3", "--random-seed", "4",
    "--range", "learning_rate=0.01:1:log", "--range", "batch_size=4:16",
    "--epochs", "6", "--dtype", "float64", "--device", "cpu",
)  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    points = sine_points(50, seed=8)
    path = tmp_path / "d.csv"
    path.write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in zip(points["x"], points["y"], strict=True)))
    return path


@pytest.mark.parametrize("halving", [(), ("--halving", "2:3:2")], ids=["full", "halving"])
def test_a_search_locally_and_on_the_server_asks_the_same_trials_with_the_same_results(
    server: Server, data: Path, halving: tuple[str, ...]
) -> None:
    local = run("sweep", data.name, *SEARCH, *halving, "--json", cwd=data.parent, env=clean_env())
    assert local.returncode == 0, local.stderr
    here = json.loads(local.stdout)["trials"]
    ended = {"succeeded", "failed", "pruned"} if halving else {"succeeded", "failed"}
    assert len(here) == 7 and {t["status"] for t in here} <= ended
    assert ("pruned" in {t["status"] for t in here}) == bool(halving)
    remote = run(
        "sweep", data.name, *SEARCH, *halving, "--wait", "--json", "--server", server.url, "--key", server.key,
        cwd=data.parent,
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    printed = json.loads(remote.stdout)
    assert printed["sweep"]["search"]["trials"] == 7 and printed["sweep"]["status"] == "succeeded"
    there = printed["trials"]
    assert [t["hyperparameters"] for t in there] == [t["hyperparameters"] for t in here]
    for a, b in zip(here, there, strict=True):
        objective = None if b["objective"] is None else pytest.approx(b["objective"], rel=1e-9)
        assert (a["status"], a["objective"]) == (b["status"], objective)
        assert (a["bracket"], a["rung"], a["epochs_completed"]) == (b["bracket"], b["rung"], b["epochs_completed"])
    board = run("sweep", data.name, *SEARCH, "--top", "3", cwd=data.parent, env=clean_env()).stdout.splitlines()
    assert board[0].split()[:3] == ["index", "learning_rate", "batch_size"] and len(board) == 4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--search", "tpe", "--range", "learning_rate=0.1:1"], "--search takes --trials N"),
        (["--trials", "3"], "--trials and --batch are for --search"),
        (["--search", "tpe", "--trials", "3"], "give at least one range"),
        (["--search", "grid", "--trials", "3", "--range", "learning_rate=0.1:1"], "tpe"),
        (["--search", "tpe", "--trials", "3", "--batch", "0", "--range", "learning_rate=0.1:1"], "batch"),
    ],
)
def test_a_bad_search_is_one_line_and_exit_2(data: Path, flags: list[str], message: str) -> None:
    done = run("sweep", data.name, *flags, cwd=data.parent, env=clean_env())
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr
