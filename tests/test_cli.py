"""The tinytrain command: local training from a CSV file, and keys."""

import json
import math
import os
from pathlib import Path

import pytest

from tests.reference import NAMES, plain_train
from tests.support.cli import run
from tests.support.data import INIT


def test_train_json_prints_only_the_result_and_matches_the_plain_loop(tmp_path: Path) -> None:
    xs = [i / 10 - 2 for i in range(41)]
    ys = [abs(x) - 1 for x in xs]
    (tmp_path / "data.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in zip(xs, ys, strict=True)))
    done = run(
        "train",
        "data.csv",
        "--json",
        "--dtype",
        "float64",
        "--no-shuffle",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--learning-rate",
        "0.2",
        "--init",
        json.dumps(INIT),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    params, history = plain_train(xs, ys, INIT, 0.2, 8, 4)
    for k in NAMES:
        assert result["parameters"][k] == pytest.approx(params[k], rel=1e-10, abs=1e-12)
    assert result["loss_history"] == pytest.approx(history, rel=1e-10)


def test_train_prints_the_parameters_and_final_loss(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("0,0\n1,1\n2,0\n3,1\n")
    done = run(
        "train",
        "d.csv",
        "--epochs",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--validation-fraction",
        "0.25",
        "--drop-last",
        "--seed",
        "4",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert [line.split("=")[0].strip() for line in done.stdout.splitlines()[:7]] == list(NAMES)
    assert "final loss" in done.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [("x,y\n1,2\n3\n", "line 3"), ("1,2\n3,abc\n", "line 2"), ("1,2\n3,inf\n", "line 2"), ("", "no points")],
)
def test_malformed_csv_is_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.csv").write_text(text)
    done = run("train", "bad.csv", cwd=tmp_path)
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_without_a_batch_size_a_small_file_trains_on_all_its_points_at_once(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("0,0\n1,1\n2,4\n3,9\n")
    given = run("train", "d.csv", "--json", "--epochs", "5", "--batch-size", "4", cwd=tmp_path)
    left_out = run("train", "d.csv", "--json", "--epochs", "5", cwd=tmp_path)
    assert left_out.returncode == given.returncode == 0, left_out.stderr
    timed = ("training_seconds",)
    same = [{k: v for k, v in json.loads(done.stdout).items() if k not in timed} for done in (left_out, given)]
    assert same[0] == same[1]


def test_bad_options_are_errors(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("0,0\n1,1\n")
    assert "batch_size" in run("train", "d.csv", "--batch-size", "3", cwd=tmp_path).stderr
    assert "initial_parameters" in run("train", "d.csv", "--init", '{"w11": 1}', cwd=tmp_path).stderr
    assert run("train", "missing.csv", cwd=tmp_path).returncode != 0


def test_keys_create_prints_the_key_alone_and_list_never_shows_it(tmp_path: Path) -> None:
    full_env = {**os.environ, "TINYTRAIN_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    create = run("keys", "create", "--owner", "ann", cwd=tmp_path, env=full_env)
    key = create.stdout.strip()
    assert create.returncode == 0 and key.startswith("tt_") and create.stdout == key + "\n"
    listed = run("keys", "list", cwd=tmp_path, env=full_env)
    assert "ann" in listed.stdout and key not in listed.stdout


def _sine_csv(path: Path, n: int = 60) -> Path:
    xs = [i / n * 6 - 3 for i in range(n)]
    path.write_text("x,y\n" + "".join(f"{x},{math.sin(x)}\n" for x in xs))
    return path


def test_sweep_json_trials_equal_train_of_each_trial(tmp_path: Path) -> None:
    _sine_csv(tmp_path / "d.csv")
    base = ["--dtype", "float64", "--epochs", "15", "--batch-size", "8"]
    grid = ["--grid", "learning_rate=0.1,0.7", "--grid", "seed=0,3", "--grid", "drop_last=false,true"]
    done = run("sweep", "d.csv", "--json", *base, *grid, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    trials = out["trials"]
    assert [t["index"] for t in trials] == list(range(8))
    # Grid order: keys as given, the last varying fastest.
    assert [(t["hyperparameters"]["learning_rate"], t["hyperparameters"]["drop_last"]) for t in trials[:3]] == [
        (0.1, False),
        (0.1, True),
        (0.1, False),
    ]
    for t in (trials[0], trials[5]):
        hp = t["hyperparameters"]
        flags = ["--learning-rate", str(hp["learning_rate"]), "--seed", str(hp["seed"])]
        alone = run(
            "train", "d.csv", "--json", *base, *flags, *(["--drop-last"] if hp["drop_last"] else []), cwd=tmp_path
        )
        result = json.loads(alone.stdout)
        assert t["result"]["parameters"] == result["parameters"]
        assert t["result"]["loss_history"] == result["loss_history"]
    best = min(trials, key=lambda t: t["objective"])
    assert out["best"]["index"] == best["index"]


def test_sweep_table_and_random_draws(tmp_path: Path) -> None:
    _sine_csv(tmp_path / "d.csv")
    args = ["--random", "6", "--random-seed", "2", "--range", "learning_rate=0.01:1:log", "--epochs", "5"]
    done = run("sweep", "d.csv", *args, "--top", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["index", "learning_rate"] and len(lines) == 4
    rates = [float(line.split()[1]) for line in lines[1:]]
    assert all(0.01 <= r <= 1 for r in rates)
    again = run("sweep", "d.csv", *args, "--top", "3", cwd=tmp_path)
    assert again.stdout == done.stdout  # the same draws from the same seed


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grid", "dtype=float64"], "dtype cannot be swept"),
        (["--grid", "learning_rate=a"], "learning_rate: Input should be a valid number"),
        (["--grid", "batch_size=10,500"], "trial 1: batch_size 500 is larger than the 60 training points"),
        (["--grid", "learning_rate"], "--grid takes NAME=VALUE"),
        (["--random", "3", "--range", "learning_rate=1:0.1"], "min 1.0 is greater than max 0.1"),
        (["--random", "3", "--range", "learning_rate=0:1:log"], "a log range needs min > 0"),
    ],
)
def test_sweep_bad_input_is_one_line_and_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    _sine_csv(tmp_path / "d.csv")
    done = run("sweep", "d.csv", *flags, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr


def test_a_halving_sweep_prunes_trials_to_what_a_job_of_their_rung_gives(tmp_path: Path) -> None:
    _sine_csv(tmp_path / "d.csv")
    base = ["--dtype", "float64", "--epochs", "18", "--batch-size", "8", "--validation-fraction", "0.2"]
    draws = ["--random", "12", "--range", "learning_rate=0.02:1:log", "--halving", "2:3:2"]
    done = run("sweep", "d.csv", "--json", *base, *draws, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    trials = out["trials"]
    # Hyperband's two brackets, rungs 2, 6, 18 and 6, 18: their first and last rungs prune.
    assert {t["bracket"] for t in trials} == {0, 1}
    pruned = [t for t in trials if t["status"] == "pruned"]
    succeeded = [t for t in trials if t["status"] == "succeeded"]
    assert {t["rung"] for t in pruned} == {2, 6} and {t["rung"] for t in succeeded} == {18}
    assert all(t["objective"] is None and t["rung"] == t["epochs_completed"] for t in pruned)
    assert out["best"]["index"] == min(succeeded, key=lambda t: t["objective"])["index"]
    for t in (pruned[0], succeeded[0]):
        flags = ["--learning-rate", str(t["hyperparameters"]["learning_rate"]), "--epochs", str(t["rung"])]
        alone = json.loads(run("train", "d.csv", "--json", *base, *flags, cwd=tmp_path).stdout)
        assert t["result"]["parameters"] == alone["parameters"]
        assert t["result"]["loss_history"] == alone["loss_history"]

    board = run("sweep", "d.csv", *base, *draws, "--top", "12", cwd=tmp_path).stdout.splitlines()
    assert board[0].split() == ["index", "learning_rate", "final_validation_loss", "rung", "epochs", "status"]
    rows = [line.split() for line in board[1:]]
    assert [r[-1] for r in rows] == ["succeeded"] * len(succeeded) + ["pruned"] * len(pruned)
    assert [int(r[0]) for r in rows[len(succeeded) :]] == [t["index"] for t in pruned]  # unranked: by index
    assert [(int(r[3]), int(r[4])) for r in rows[len(succeeded) :]] == [(t["rung"], t["rung"]) for t in pruned]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3", "--halving takes MIN:FACTOR[:BRACKETS]"),
        ("3:x", "--halving takes MIN:FACTOR[:BRACKETS]"),
        ("3:3:1:1", "--halving takes MIN:FACTOR[:BRACKETS]"),
        ("-1:3", "--halving takes MIN:FACTOR[:BRACKETS]"),
        ("0:3", "--halving 0:3: min_epochs should be greater than or equal to 1"),
        ("3:1", "--halving 3:1: reduction_factor should be greater than or equal to 2"),
        ("3:3:0", "--halving 3:3:0: brackets should be greater than or equal to 1"),
        ("30:3", "min_epochs 30 is past the 20 epochs"),
        ("3:3:3", "the last bracket's first rung, 27 epochs, is past the 20 epochs"),
    ],
)
def test_sweep_bad_halving_is_one_line_and_exit_2(tmp_path: Path, value: str, message: str) -> None:
    _sine_csv(tmp_path / "d.csv")
    done = run("sweep", "d.csv", "--random", "3", "--epochs", "20", "--halving", value, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr, done.stderr


def test_halving_with_a_grid_that_varies_epochs_is_refused(tmp_path: Path) -> None:
    _sine_csv(tmp_path / "d.csv")
    done = run("sweep", "d.csv", "--grid", "epochs=9,27", "--halving", "3:3", cwd=tmp_path)
    assert done.returncode == 2 and "do not vary epochs" in done.stderr, done.stderr
