"""The two quick-start commands: ``python3 dev.py demo`` and ``python3 dev.py test``.

Each creates ``.venv`` next to this file on first use, installs the project into it (again only
when ``pyproject.toml`` changes) and then runs the demo or the whole test suite. It needs nothing
but Python >= 3.11 with pip and venv.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _ensure_venv(extras: str) -> None:
    """Create the virtual environment and install the project when it is missing or stale."""
    if not (BIN / "python").exists():
        print(f"创建虚拟环境 / creating virtual environment: {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{extras or 'base'}-{digest}"
    if stamp.exists():
        return
    print("安装依赖 / installing dependencies (first run only) ...")
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    target = f".[{extras}]" if extras else "."
    subprocess.run([*pip, "-e", target], check=True, cwd=ROOT)
    stamp.touch()


def main(argv: list[str]) -> int:
    """Dispatch ``demo`` or ``test``; extra arguments go to the demo command or to pytest."""
    if not argv or argv[0] not in {"demo", "test"}:
        print("用法 / usage: python3 dev.py demo [--out DIR] | python3 dev.py test [pytest args]")
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        _ensure_venv("")
        return subprocess.call([str(BIN / "geo-minzheng"), "demo", *rest], cwd=ROOT)
    _ensure_venv("test")
    return subprocess.call([str(BIN / "python"), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
