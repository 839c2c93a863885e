"""benchmarks/gpu_check.py (`make gpu-check`) as a real process: its no-GPU answer, and its whole
run at tiny sizes with the kernel in Triton's interpreter, so the script cannot rot unnoticed
where no GPU ever runs it."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[2]


def gpu_check(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "benchmarks.gpu_check", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2() -> None:
    done = gpu_check()
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == [
        "gpu-check: no CUDA device here (torch.cuda.is_available() is False): nothing checked"
    ]


def test_the_interpreted_run_prints_its_table_and_every_trial_equals_its_job() -> None:
    done = gpu_check("--interpret")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(k for k, line in enumerate(lines) if line.lstrip().startswith("K |"))
    rows = [line.split(" | ") for line in lines[header + 1 :] if " | " in line]
    assert [int(r[0]) for r in rows] == [2, 5] and all(r[-1] == "yes" for r in rows)
    assert all(float(cell) >= 0 for r in rows for cell in r[3:7])  # every rate measured (the interpreter's round to 0)
    assert lines[-1] == "gpu-check: every check passed"
