"""scripts/setup installs once and then only when what it installs from has changed."""

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _checkout(tmp_path: Path) -> Path:
    """A copy of what scripts/setup reads, with a stand-in .venv whose pip logs its calls."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    for f in ("scripts/setup", "pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO / f, root / f)
    bin_ = root / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_ / "pip").write_text(f"#!/bin/sh\necho \"$@\" >> {root / 'pip.log'}\n"
                              "echo 'Collecting ray==2.60.0 (from x)'\n"
                              "echo 'Processing /opt/wheels/torch-2.13.0+cpu-cp311.whl'\n"
                              "echo 'Requirement already satisfied: numpy'\n")
    for f in bin_.iterdir():
        f.chmod(0o755)
    return root


def _setup(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BROWSER_PATH": "/nonexistent"}
    r = subprocess.run(["bash", str(root / "scripts" / "setup"), *args], cwd=root, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def _pip_calls(root: Path) -> list[str]:
    log = root / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_setup_installs_then_skips_pip_until_an_input_changes(tmp_path):
    root = _checkout(tmp_path)
    first = _setup(root, "test")
    assert _pip_calls(root) == ["install --progress-bar off --disable-pip-version-check "
                                "-c constraints.txt -e .[png,test,query,tensorboard,mlflow,wandb]"]
    assert "[setup] 2/3 installing diloco-sweep[png,test,query,tensorboard,mlflow,wandb]" in first.stdout
    # progress: one short line per package, from an index or a local wheel; nothing else
    assert "[setup]     Collecting ray==2.60.0\n[setup]     Collecting torch-2.13.0+cpu-cp311.whl\n" \
        in first.stdout and "already satisfied" not in first.stdout
    again = _setup(root, "test")
    assert len(_pip_calls(root)) == 1 and "pip skipped" in again.stdout
    _setup(root)  # other extras: install
    assert _pip_calls(root)[-1].endswith("-e .[png]")
    with open(root / "constraints.txt", "a") as f:
        f.write("numpy<3\n")
    _setup(root)  # a changed pin: install again
    assert len(_pip_calls(root)) == 3
