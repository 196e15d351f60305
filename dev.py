"""The quick-start commands: ``python3 dev.py demo`` and ``python3 dev.py test``, plus the pinned
versions (``lock``) and the offline installation (``wheelhouse``).

``demo`` and ``test`` create ``.venv`` next to this file on first use, install the project into it
(again only when ``pyproject.toml`` or ``constraints.txt`` changes) and then run the demo or the
whole test suite. Every install is constrained by ``constraints.txt``, so a fresh machine and CI
get exactly the versions the tests ran with. It needs nothing but Python >= 3.11 with pip and venv.

``lock`` rewrites ``constraints.txt`` from ``.venv`` (after changing a dependency). ``wheelhouse``
runs on a machine with internet access and fills a folder with the project's wheel and a wheel of
every dependency (pinned by ``constraints.txt``); an intranet machine then installs from that folder
alone (see ``docs/install.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
CONSTRAINTS = ROOT / "constraints.txt"
#: The project's own distribution name (never pinned: it is the checkout itself).
PROJECT = "geo-minzheng"
#: The extras whose dependencies are pinned: everything CI installs, and PostGIS support.
LOCKED_EXTRAS = ("test", "postgis")
#: Installers pinned too, so that the build of the project's wheel is reproducible offline
#: (``pip wheel --no-build-isolation`` uses them; setuptools >= 77 reads PEP 639 licences).
TOOLS = ("pip", "setuptools", "wheel")
BUILD_TOOLS = ("setuptools>=77", "wheel")  # pyproject.toml's [build-system] requires
#: What the project's wheel is built from (pyproject.toml's packages and package-dir).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "geo_minzheng", "maps", "api", "layers")
USAGE = (
    "用法 / usage: python3 dev.py demo [--out DIR] | test [pytest args] | lock | "
    "wheelhouse [--dest DIR] [--extras postgis] [--platform TAG --python-version X.Y] "
    "[pip index options]"
)


def _python() -> str:
    return str(BIN / ("python.exe" if os.name == "nt" else "python"))


def _pip(python: str) -> list[str]:
    return [python, "-m", "pip", "install", "--disable-pip-version-check", "-q"]


def _constraint_args() -> list[str]:
    return ["-c", str(CONSTRAINTS)] if CONSTRAINTS.exists() else []


def _ensure_venv(extras: str, *, constrained: bool = True) -> None:
    """Create the virtual environment and install the project when it is missing or stale.

    ``constrained=False`` (for ``lock``) installs without ``constraints.txt``: pip keeps the
    versions already installed and adds or upgrades only what a changed requirement needs.
    """
    if not Path(_python()).exists():
        print(f"创建虚拟环境 / creating virtual environment: {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    if CONSTRAINTS.exists():
        digest.update(CONSTRAINTS.read_bytes())
    stamp = VENV / f".installed-{extras or 'base'}-{digest.hexdigest()[:16]}"
    if stamp.exists():
        return
    print("安装依赖 / installing dependencies (first run only) ...")
    pip = _pip(_python())
    pins = _constraint_args() if constrained else []
    # the installers first: pinned, or (lock) only what building the wheel offline needs
    tools = ["--upgrade", *TOOLS, *pins] if constrained else [*BUILD_TOOLS]
    subprocess.run([*pip, *tools], check=True)
    target = f".[{extras}]" if extras else "."
    subprocess.run([*pip, *pins, "-e", target], check=True, cwd=ROOT)
    if constrained:
        stamp.touch()


# ------------------------------------------------------------------------------ pinned versions


def _norm(name: str) -> str:
    """A distribution name in its canonical form (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements(extras: Iterable[str] = ()) -> list[str]:
    """The project's requirement strings from ``pyproject.toml``, with those of ``extras``.

    Read from the file, not from the installed metadata, which an editable install only
    refreshes when it is reinstalled.
    """
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    return reqs


def requirement_closure(requirements: Iterable[str]) -> dict[str, str]:
    """Every installed distribution that ``requirements`` need, recursively: name -> version.

    Read from the installed metadata of the running interpreter, environment markers evaluated
    for it (so the pins are those of the platform that ran the tests). Needs ``packaging``
    (pip's own copy is used when it is not installed).
    """
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - every pip carries a copy
        from pip._vendor.packaging.requirements import Requirement

    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    wanted: dict[str, set[str]] = {}
    stack: list[tuple[str, set[str]]] = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            stack.append((_norm(req.name), set(req.extras)))
    while stack:
        name, needed = stack.pop()
        if name in wanted and needed <= wanted[name]:
            continue
        if name not in installed:
            msg = f"{name} is required but not installed; run: python3 dev.py lock"
            raise LookupError(msg)
        wanted.setdefault(name, set()).update(needed)
        for line in installed[name].requires or []:
            req = Requirement(line)
            envs = [{"extra": e} for e in sorted(wanted[name])] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                stack.append((_norm(req.name), set(req.extras)))
    return {name: installed[name].version for name in sorted(wanted)}


#: Marker values of platforms a wheelhouse may be built for (``--platform`` prefix -> values):
#: ``pip download --platform`` evaluates environment markers for the machine it runs on, so a
#: Windows-only requirement (click's ``colorama; platform_system == "Windows"``) must be added.
PLATFORM_MARKERS = {
    "win": {"platform_system": "Windows", "sys_platform": "win32", "os_name": "nt"},
    "macosx": {"platform_system": "Darwin", "sys_platform": "darwin", "os_name": "posix"},
    "manylinux": {"platform_system": "Linux", "sys_platform": "linux", "os_name": "posix"},
    "linux": {"platform_system": "Linux", "sys_platform": "linux", "os_name": "posix"},
}


def platform_only_requirements(requirements: Iterable[str], platform: str) -> list[str]:
    """Requirements of the installed closure of ``requirements`` that only ``platform`` (a wheel
    platform tag such as ``win_amd64``) needs: their markers hold there and not here."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - every pip carries a copy
        from pip._vendor.packaging.requirements import Requirement

    there = next((v for k, v in PLATFORM_MARKERS.items() if platform.startswith(k)), None)
    if there is None:
        return []
    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    found: dict[str, str] = {}
    for name in requirement_closure(requirements):
        for line in installed[name].requires or []:
            req = Requirement(line)
            if req.marker is None or "extra" in str(req.marker):
                continue
            if req.marker.evaluate({**there, "extra": ""}) and not req.marker.evaluate():
                found.setdefault(_norm(req.name), f"{req.name}{req.specifier}")
    return sorted(found.values())


def locked_versions() -> dict[str, str]:
    """What ``constraints.txt`` should pin: the project's closure with every extra, plus the
    installers (:data:`TOOLS`), from the running interpreter's environment."""
    from importlib import metadata

    pins = requirement_closure(project_requirements(LOCKED_EXTRAS))
    for tool in TOOLS:
        try:
            pins[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            continue
    return dict(sorted(pins.items()))


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """The ``name==version`` pins of a constraints file, names canonical."""
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            pins[_norm(name)] = ver.strip()
    return pins


def _write_lock() -> int:
    """Write ``constraints.txt`` from the running interpreter's environment (the venv's)."""
    lines = [
        "# Versions the tests ran with: every install by dev.py uses this file (pip -c), so CI and",
        "# a fresh machine resolve the same versions. Written by `python3 dev.py lock` from .venv",
        f"# (Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform}): "
        f"{PROJECT}[{','.join(LOCKED_EXTRAS)}] and its dependencies, plus {', '.join(TOOLS)}.",
    ]
    lines += [f"{name}=={ver}" for name, ver in locked_versions().items()]
    CONSTRAINTS.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"写入 / wrote {CONSTRAINTS} ({len(lines) - 3} pins)")
    return 0


# ------------------------------------------------------------------------- offline installation


def _pip_python() -> str:
    """An interpreter with pip: this one, else the project's venv (created bare if missing)."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return sys.executable
    if not Path(_python()).exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    return _python()


def wheelhouse(argv: list[str]) -> int:
    """Fill a folder with the project's wheel and every dependency's, for ``pip --no-index``.

    Options other than the ones below go to pip unchanged (index options such as
    ``--index-url``, ``--find-links``, ``--no-index``, or ``--no-build-isolation``).
    """
    parser = argparse.ArgumentParser(prog="python3 dev.py wheelhouse")
    parser.add_argument("--dest", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--extras", default="", help="e.g. postgis")
    parser.add_argument("--platform", action="append", default=[], help="e.g. win_amd64")
    parser.add_argument("--python-version", default=None, help="e.g. 3.11 (with --platform)")
    args, pip_options = parser.parse_known_args(argv)
    dest = args.dest.resolve()
    dest.mkdir(parents=True, exist_ok=True)
    python = _pip_python()
    quiet = ["--disable-pip-version-check", "-q"]
    print(f"构建本项目的 wheel / building the project's wheel → {dest}")
    for old in dest.glob("geo_minzheng-*.whl"):
        old.unlink()  # one project wheel: the one built from this checkout
    cmd = [python, "-m", "pip", "wheel", *quiet, "--no-deps", "-w", str(dest), *pip_options]
    with tempfile.TemporaryDirectory() as tmp:
        # built from a copy: a build/ folder in the checkout could carry deleted modules along
        src = Path(tmp) / "src"
        src.mkdir()
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in WHEEL_SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, src / name, ignore=skip)
            else:
                shutil.copy2(ROOT / name, src / name)
        subprocess.run([*cmd, str(src)], check=True)
    (project_wheel,) = dest.glob("geo_minzheng-*.whl")
    target = f"{project_wheel}[{args.extras}]" if args.extras else str(project_wheel)
    platform = [f"--platform={p}" for p in args.platform]
    if args.python_version:
        platform.append(f"--python-version={args.python_version}")
    if platform:  # wheels for another machine: pip cannot build sdists for it
        platform.append("--only-binary=:all:")
    print("下载全部依赖 / downloading every dependency ...")
    cmd = [python, "-m", "pip", "download", *quiet, "-d", str(dest), *_constraint_args()]
    subprocess.run([*cmd, *platform, *pip_options, target], check=True)
    extra = sorted(
        {
            req
            for tag in args.platform
            for req in platform_only_requirements(project_requirements([args.extras]), tag)
        }
    )
    if extra:  # needed there only: pip evaluated the markers for this machine
        subprocess.run([*cmd, *platform, *pip_options, *extra], check=True)
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    (dest / "INSTALL.txt").write_text(_install_text(project_wheel.name, args.extras), "utf-8")
    print(f"完成 / done: {len(wheels)} wheels in {dest}; see {dest / 'INSTALL.txt'}")
    return 0


def _install_text(project_wheel: str, extras: str) -> str:
    spec = f"{PROJECT}[{extras}]" if extras else PROJECT
    return f"""geo-minzheng 离线安装 / offline installation ({project_wheel})

把本文件夹复制到内网机器，在它的上一级目录运行（不需要互联网）：
Copy this folder to the intranet machine and run, from the folder above it (no internet needed):

Linux:
  python3 -m venv gm && gm/bin/pip install --no-index --find-links wheelhouse {spec}
  gm/bin/geo-minzheng demo --out gm-demo

Windows (PowerShell / cmd):
  py -m venv gm && gm\\Scripts\\pip install --no-index --find-links wheelhouse {spec}
  gm\\Scripts\\geo-minzheng demo --out gm-demo

(If the folder is not called "wheelhouse", use its name after --find-links.)
"""


def main(argv: list[str]) -> int:
    """Dispatch ``demo``, ``test``, ``lock`` or ``wheelhouse``; extra arguments go to the demo
    command, to pytest, or to pip."""
    if not argv or argv[0] not in {"demo", "test", "lock", "wheelhouse", "_lock"}:
        print(USAGE)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        _ensure_venv("")
        return subprocess.call([str(BIN / "geo-minzheng"), "demo", *rest], cwd=ROOT)
    if command == "wheelhouse":
        return wheelhouse(rest)
    if command == "lock":
        _ensure_venv(",".join(LOCKED_EXTRAS), constrained=False)
        return subprocess.call([_python(), str(ROOT / "dev.py"), "_lock"], cwd=ROOT)
    if command == "_lock":  # run by `lock` inside the venv
        return _write_lock()
    _ensure_venv("test")
    return subprocess.call([_python(), "-m", "pytest", *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
