"""The installed commands (`tinytrain` and the other console scripts beside this Python)."""

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tinytrain command to completion, whatever its exit status."""
    return subprocess.run(
        [str(BIN / "tinytrain"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def tinytrain(*args: str, env: dict[str, str], cwd: Path) -> str:
    """Run a tinytrain command that must succeed; its stdout."""
    done = run(*args, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout
