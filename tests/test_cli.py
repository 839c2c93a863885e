"""The tinytrain command: local training from a CSV file, and keys."""

import json
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
