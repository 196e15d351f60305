"""Dependencies: every declared distribution is used, CI installs the versions the tests ran with
(``constraints.txt``), and the offline installation from a wheelhouse works with no index.

The slow test plays both machines of an intranet installation without any network: the
"internet" is a folder of wheels repacked from the distributions installed for the tests (so it
holds exactly the pinned versions); ``python3 dev.py wheelhouse`` fills a wheelhouse from it, a
fresh virtual environment installs from the wheelhouse alone (``pip install --no-index
--find-links``) and runs the demo from another folder.
"""

from __future__ import annotations

import ast
import base64
import csv
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT, need

BIN = "Scripts" if os.name == "nt" else "bin"
#: Where the code of each group of requirements lives: runtime dependencies must be imported by
#: the distribution's own packages; the extras' anywhere in the repository.
RUNTIME_CODE = ("geo_minzheng", "maps", "api")
ALL_CODE = (*RUNTIME_CODE, "tests", "benchmarks", "dev.py")
#: A requirement line documented as used without an import: ``"name>=1",  # indirect: why``.
_INDIRECT = re.compile(r'^\s*"(?P<req>[^"]+)",?\s*#\s*indirect:\s*(?P<why>\S.*)$')


def _dev() -> object:
    """dev.py as a module (it is a script at the top of the checkout, not a package)."""
    spec = importlib.util.spec_from_file_location("gm_dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(requirement: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0])


def imported_modules(paths: Iterable[Path]) -> set[str]:
    """Top-level module names imported by the Python files under ``paths``: import statements
    (also inside functions) and ``importorskip``/``import_module``/``find_spec("name")``."""
    names: set[str] = set()
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*.py")))]
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None))
                in {"importorskip", "import_module", "find_spec"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value.split(".")[0])
    return names


def unused_distributions(
    declared: Iterable[str],
    imported: set[str],
    *,
    indirect: Mapping[str, str],
    modules_of: Mapping[str, set[str]],
) -> list[str]:
    """Declared distributions none of whose top-level modules is imported, unless documented
    as indirect. ``modules_of``: distribution (canonical name) -> its top-level modules."""
    unused = []
    for requirement in declared:
        name = _req_name(requirement)
        if name in indirect:
            continue
        modules = modules_of.get(name) or {name.replace("-", "_")}
        if not modules & imported:
            unused.append(name)
    return sorted(set(unused))


def _modules_of() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            out.setdefault(_norm(dist), set()).add(module)
    return out


def _declared() -> tuple[dict[str, list[str]], dict[str, str]]:
    """Requirement groups of pyproject.toml ('' = runtime) and the documented indirect ones."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = tomllib.loads(text)["project"]
    groups = {"": list(project["dependencies"]), **project["optional-dependencies"]}
    indirect = {}
    for line in text.splitlines():
        match = _INDIRECT.match(line)
        if match:
            indirect[_req_name(match["req"])] = match["why"]
    return groups, indirect


# ------------------------------------------------------------------------------ declared = used


def test_every_declared_distribution_is_imported() -> None:
    groups, indirect = _declared()
    modules_of = _modules_of()
    runtime = imported_modules(ROOT / p for p in RUNTIME_CODE)
    anywhere = imported_modules(ROOT / p for p in ALL_CODE)
    problems = {}
    for group, requirements in groups.items():
        imported = runtime if group == "" else anywhere
        unused = unused_distributions(
            requirements, imported, indirect=indirect, modules_of=modules_of
        )
        if unused:
            problems[group or "dependencies"] = unused
    assert problems == {}, (
        f"declared but never imported: {problems}; remove them, or mark the requirement line "
        "'# indirect: <who uses it>' in pyproject.toml"
    )
    # the documented exceptions are few and say why
    assert set(indirect) == {"openpyxl", "ruff", "mypy", "httpx2"}, indirect


def test_an_unused_declaration_is_reported() -> None:
    """The check itself: a declared distribution that nothing imports is reported (here httpx2,
    when its one user, starlette's TestClient, is not among the files read); documented indirect
    ones and imported ones are not."""
    modules_of = {"httpx2": {"httpx2"}, "pyyaml": {"yaml"}, "openpyxl": {"openpyxl"}}
    imported = imported_modules([ROOT / "benchmarks", ROOT / "geo_minzheng" / "catalog.py"])
    assert "yaml" in imported and "httpx2" not in imported
    declared = ["httpx2>=2.16", "pyyaml>=6.0", "openpyxl>=3.1", "PyYAML"]
    indirect = {"openpyxl": "pandas' Excel engine"}
    assert unused_distributions(declared, imported, indirect=indirect, modules_of=modules_of) == [
        "httpx2"
    ]
    assert unused_distributions(["openpyxl"], imported, indirect={}, modules_of=modules_of) == [
        "openpyxl"
    ]


def test_runtime_dependencies_hold_no_test_only_distribution() -> None:
    """httpx2 serves only starlette's TestClient: it is a test requirement, not a runtime one."""
    groups, _ = _declared()
    runtime = {_req_name(r) for r in groups[""]}
    assert "httpx2" not in runtime and "httpx2" in {_req_name(r) for r in groups["test"]}
    assert "httpx" not in {_req_name(r) for g in groups.values() for r in g}


# ------------------------------------------------------------------------------ pinned versions


def test_constraints_pin_exactly_what_the_tests_run_with() -> None:
    """constraints.txt pins every distribution installed for the tests at the installed version,
    and nothing else (``python3 dev.py lock`` rewrites it)."""
    dev = _dev()
    pins = dev.read_constraints()
    running = dev.requirement_closure(dev.project_requirements(("test",)))
    wrong = {n: (v, pins.get(n)) for n, v in running.items() if pins.get(n) != v}
    assert wrong == {}, f"installed vs pinned: {wrong}; run python3 dev.py lock"
    locked = dev.requirement_closure(dev.project_requirements(dev.LOCKED_EXTRAS))
    stale = sorted(set(pins) - set(locked) - set(dev.TOOLS))
    assert stale == [], f"pinned but not required: {stale}; run python3 dev.py lock"
    assert {"numpy", "pandas", "geopandas", "fastapi", "pytest", "setuptools"} <= set(pins)
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", v) for v in pins.values()), pins
    assert "geo-minzheng" not in pins


def test_dev_py_installs_with_the_constraints(tmp_path: Path, monkeypatch) -> None:
    """Every pip install that dev.py runs for demo/test passes ``-c constraints.txt``."""
    dev = _dev()
    fake = tmp_path / ".venv"
    (fake / BIN).mkdir(parents=True)
    (fake / BIN / ("python.exe" if os.name == "nt" else "python")).touch()
    monkeypatch.setattr(dev, "VENV", fake)
    monkeypatch.setattr(dev, "BIN", fake / BIN)
    calls: list[list[str]] = []
    monkeypatch.setattr(dev.subprocess, "run", lambda cmd, **kw: calls.append(list(cmd)))
    dev._ensure_venv("test")
    installs = [c for c in calls if "install" in c]
    assert len(installs) == 2, calls
    for cmd in installs:
        i = cmd.index("-c")
        assert Path(cmd[i + 1]) == ROOT / "constraints.txt", cmd
    assert installs[-1][-2:] == ["-e", ".[test]"]
    assert {"pip", "setuptools", "wheel"} <= set(installs[0])
    calls.clear()
    dev._ensure_venv("test")  # stamped: nothing installed again
    assert calls == []


def test_a_wheelhouse_for_windows_gets_its_windows_only_requirements() -> None:
    """pip download --platform evaluates markers for this machine; dev.py adds the rest."""
    dev = _dev()
    runtime = dev.project_requirements()
    windows = dev.platform_only_requirements(runtime, "win_amd64")
    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    # independent: scan every requirement of the runtime closure for a Windows-only marker
    expected = set()
    for name in dev.requirement_closure(runtime):
        for line in installed[name].requires or []:
            spec, _, marker = line.partition(";")
            windows_only = r"sys_platform\s*==\s*.win32.|platform_system\s*==\s*.Windows."
            if re.search(windows_only, marker) and "extra" not in marker:
                expected.add(_req_name(spec))
    assert {_req_name(r) for r in windows} == expected
    assert dev.platform_only_requirements(runtime, "manylinux_2_28_x86_64") == []
    assert dev.platform_only_requirements(runtime, "no_such_platform") == []


# ------------------------------------------------------------------------- offline installation


def repack_installed(distribution: metadata.Distribution, folder: Path) -> Path:
    """A wheel of an installed distribution, from its RECORD (files outside site-packages, such
    as console scripts, are left out: pip writes scripts again from entry_points.txt)."""
    info = next(f for f in distribution.files or [] if f.name == "WHEEL")
    tags = [
        line.split(":", 1)[1].strip()
        for line in info.read_text().splitlines()
        if line.startswith("Tag:")
    ]
    py, abi, plat = (sorted({t.split("-")[i] for t in tags}) for i in range(3))
    name = re.sub(r"[-_.]+", "_", distribution.metadata["Name"])
    wheel = folder / f"{name}-{distribution.version}-{'.'.join(py)}-{'.'.join(abi)}-"
    wheel = wheel.with_name(wheel.name + f"{'.'.join(plat)}.whl")
    dist_info = info.parent.as_posix()
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for f in distribution.files or []:
            arc = f.as_posix()
            if arc.startswith("..") or "__pycache__" in arc or arc.endswith(".pyc"):
                continue
            if f.parent.as_posix() == dist_info and f.name in skip:
                continue
            data = Path(str(f.locate())).read_bytes()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            writer.writerow([arc, f"sha256={digest.decode()}", len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        zf.writestr(f"{dist_info}/RECORD", record.getvalue())
    return wheel


def _offline_env() -> dict[str, str]:
    """No pip configuration, index or cache of this machine, no GEO_MINZHENG_* settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "GEO_MINZHENG_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", PYTHONNOUSERSITE="1")
    return env


@pytest.mark.slow
def test_offline_install_from_a_wheelhouse_runs_the_demo(tmp_path: Path) -> None:
    dev = _dev()
    try:
        setuptools_major = int(metadata.version("setuptools").split(".")[0])
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        setuptools_major = 0
    need(
        setuptools_major >= 77,
        "setuptools >= 77 and wheel (installed by python3 dev.py) build the wheel offline",
    )
    # the "internet": wheels of the pinned runtime closure, repacked from this environment
    index = tmp_path / "index"
    index.mkdir()
    runtime = dev.requirement_closure(dev.project_requirements())
    installed = {_norm(d.metadata["Name"]): d for d in metadata.distributions()}
    for name in runtime:
        repack_installed(installed[name], index)
    env = _offline_env()

    def run(*cmd: str | Path, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
        )

    # 1. connected machine: one command fills the wheelhouse
    house = tmp_path / "wheelhouse"
    proc = run(
        sys.executable, ROOT / "dev.py", "wheelhouse", "--dest", house,
        "--no-index", "--find-links", index, "--no-build-isolation",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = {p.name for p in house.glob("*.whl")}
    project = [w for w in wheels if w.startswith("geo_minzheng-")]
    assert len(project) == 1 and project[0].endswith("-py3-none-any.whl"), wheels
    have = {_norm(w.split("-")[0]) for w in wheels}
    assert have == set(runtime) | {"geo-minzheng"}, sorted(have ^ set(runtime))
    pins = dev.read_constraints()
    for w in wheels - set(project):
        assert w.split("-")[1] == pins[_norm(w.split("-")[0])], w  # the pinned versions
    assert "--no-index --find-links wheelhouse geo-minzheng" in (house / "INSTALL.txt").read_text(
        encoding="utf-8"
    )

    # 2. intranet machine: the wheelhouse alone, as INSTALL.txt says
    gm = tmp_path / "gm"
    venv.EnvBuilder(with_pip=True).create(gm)
    pip = gm / BIN / ("pip.exe" if os.name == "nt" else "pip")
    proc = run(pip, "install", "-q", "--no-index", "--find-links", house, "geo-minzheng")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = gm / BIN / ("geo-minzheng.exe" if os.name == "nt" else "geo-minzheng")
    proc = run(script, "demo", "--out", "gm-demo", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = elsewhere / "gm-demo"
    for name in ("map.html", "coverage_map.html", "summary.md", "coverage_table.csv"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert {row["id"]: row["count"] for row in summary["layers"]}["roads"] == 1253
    probe = "import geo_minzheng, sys; print(geo_minzheng.__file__)"
    proc = run(gm / BIN / ("python.exe" if os.name == "nt" else "python"), "-c", probe)
    assert Path(proc.stdout.strip()).is_relative_to(gm), proc.stdout  # the wheel, not the checkout
