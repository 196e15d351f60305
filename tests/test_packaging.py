"""The distribution: what the wheel holds; the demo run from the installed wheel, elsewhere.

The slow test builds the wheel from a copy of the working tree, installs it (not editable) into a
fresh virtual environment and runs ``geo-minzheng demo`` from another folder. That environment
borrows the dependencies already installed for the tests through a ``.pth`` path line (plain path
lines add folders to ``sys.path`` but run none of their ``.pth`` files, so the checkout's editable
finder stays out); only ``geo_minzheng``, ``maps`` and ``api`` come from the wheel, which the test
checks before trusting the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pyogrio
import pytest

import geo_minzheng
from geo_minzheng import catalog, resources, scenario
from tests.conftest import ROOT

#: The three Python packages of the distribution (README.md) and the folder shipped as
#: ``geo_minzheng.demo_layers``.
PACKAGES = ("geo_minzheng", "maps", "api")
LAYERS = "layers"
DEMO_LAYERS_IN_WHEEL = "geo_minzheng/demo_layers"
#: Not sources: byte code, build leftovers, editor and temporary files (also kept out of the copy).
IGNORED = ("__pycache__", "*.pyc", "*.egg-info", "*.tmp*", ".*")
#: Summary keys that differ between two runs of the same demo: clock, paths of inputs and outputs.
RUN_SPECIFIC = {"generated_at", "timing_s", "catalog", "outputs"}
BIN = "Scripts" if os.name == "nt" else "bin"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _source_files(folder: Path) -> list[Path]:
    """Files under ``folder`` that belong in the distribution (no byte code, temporary files)."""
    skip = shutil.ignore_patterns(*IGNORED)
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(set(dirnames) - skip(dirpath, dirnames))
        out += [Path(dirpath, f) for f in sorted(set(filenames) - skip(dirpath, filenames))]
    return out


# ----------------------------------------------------------------------------- fast checks


def test_every_python_package_of_the_checkout_is_listed() -> None:
    """pyproject lists its packages (the demo layers need a name no folder search finds)."""
    tool = _pyproject()["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for name in PACKAGES
        for init in (ROOT / name).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found <= set(tool["packages"]), sorted(found - set(tool["packages"]))
    assert "geo_minzheng.demo_layers" in tool["packages"]
    assert tool["package-dir"] == {"geo_minzheng.demo_layers": LAYERS}


def test_version_is_written_once() -> None:
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = _pyproject()["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "geo_minzheng.__version__"}
    literal = f'"{geo_minzheng.__version__}"'
    holders = [
        path.relative_to(ROOT).as_posix()
        for name in (*PACKAGES, LAYERS)
        for path in (ROOT / name).rglob("*")
        if path.suffix in {".py", ".toml", ".yml", ".cfg"} and literal in path.read_text("utf-8")
    ]
    assert holders == ["geo_minzheng/__init__.py"]
    assert literal not in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_demo_catalog_and_data_come_from_the_demo_layers_package() -> None:
    """The shipped catalog is the repository's, and each of its sources lies inside the package."""
    folder = resources.demo_layers_dir()
    assert resources.demo_catalog_path() == folder / "catalog.yml"
    assert resources.demo_data_dir() == folder / "data"
    assert (
        resources.demo_catalog_path().read_bytes() == (ROOT / LAYERS / "catalog.yml").read_bytes()
    )
    assert (resources.demo_data_dir() / scenario.DEMO_GPKG_NAME).is_file()
    loaded = catalog.load_catalog(resources.demo_catalog_path(), env={})
    for entry in loaded.entries.values():
        assert Path(entry.source).is_relative_to(folder.resolve()), entry.source


def test_package_typed_markers_exist() -> None:
    for name in PACKAGES:
        assert (ROOT / name / "py.typed").is_file(), name


# --------------------------------------------------------------- the wheel, installed elsewhere


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built by pip from a copy of the working tree (the checkout gets no build/)."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist = base / "src", base / "dist"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in (*PACKAGES, LAYERS):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns(*IGNORED))
    # a path, never a bare name: pip would look a bare name up on the package index
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)]
    setuptools_major = int(version("setuptools").split(".")[0]) if _has("setuptools") else 0
    if setuptools_major >= 77:  # the build requirement is met here: build offline, faster
        cmd.insert(4, "--no-build-isolation")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = dist.glob("*.whl")
    return path


def _has(distribution: str) -> bool:
    try:
        version(distribution)
    except PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
def test_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert wheel.name.startswith(f"geo_minzheng-{geo_minzheng.__version__}-")
    expected = {p.relative_to(ROOT).as_posix() for n in PACKAGES for p in _source_files(ROOT / n)}
    expected |= {
        f"{DEMO_LAYERS_IN_WHEEL}/{p.relative_to(ROOT / LAYERS).as_posix()}"
        for p in _source_files(ROOT / LAYERS)
    }
    missing = sorted(expected - names)
    assert not missing, missing
    for must in (
        "geo_minzheng/py.typed",
        "maps/py.typed",
        "api/py.typed",
        "geo_minzheng/standards/gb50180_2018.toml",
        "maps/static/vendor/leaflet/leaflet.js",
        f"{DEMO_LAYERS_IN_WHEEL}/catalog.yml",
        f"{DEMO_LAYERS_IN_WHEEL}/data/{scenario.DEMO_GPKG_NAME}",
        f"{DEMO_LAYERS_IN_WHEEL}/data/changchun/roads_osm.geojson",
    ):
        assert must in names, must
    # nothing else at the top: no stray top-level "layers", "tests" or "benchmarks" package
    tops = {n.split("/")[0] for n in names}
    assert tops == {*PACKAGES, f"geo_minzheng-{geo_minzheng.__version__}.dist-info"}


@pytest.mark.slow
def test_demo_runs_from_the_installed_wheel_outside_the_checkout(wheel: Path, tmp_path) -> None:
    """``pip install`` the wheel into a fresh venv, run the demo elsewhere: same summary."""
    env_dir, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / BIN / ("python.exe" if os.name == "nt" else "python")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
    proc = subprocess.run([*install, str(wheel)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEO_MINZHENG_", "PYTHON"))}
    env["PYTHONNOUSERSITE"] = "1"

    def run(*args: str, cwd: Path = elsewhere) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*args], capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=600
        )

    proc = run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    site = Path(proc.stdout.strip())
    deps = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (site / "_test_deps.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")

    # the wheel is what gets imported: not the checkout, not the test venv's editable install
    probe = (
        "import json, sys, geo_minzheng, geo_minzheng.demo_layers as d, maps, api; "
        "print(json.dumps({'files': [m.__file__ for m in (geo_minzheng, d, maps, api)], "
        "'finders': [getattr(f, '__name__', type(f).__name__) for f in sys.meta_path], "
        "'path': sys.path}))"
    )
    proc = run(str(python), "-c", probe)
    assert proc.returncode == 0, proc.stderr
    where = json.loads(proc.stdout)
    for file in where["files"]:
        assert Path(file).resolve().is_relative_to(site.resolve()), file
    assert not any("Editable" in name for name in where["finders"]), where["finders"]
    assert ROOT.resolve() not in {Path(p or elsewhere).resolve() for p in where["path"]}
    shipped = site / DEMO_LAYERS_IN_WHEEL
    before = sorted(p.relative_to(site) for p in _source_files(shipped))

    out = elsewhere / "out"
    script = env_dir / BIN / ("geo-minzheng.exe" if os.name == "nt" else "geo-minzheng")
    proc = run(str(script), "demo", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("map.html", "summary.json", "summary.md", "coverage_map.html"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert Path(summary["catalog"]).resolve() == (shipped / "catalog.yml").resolve()
    # the installed package is read, never written (the demo GeoPackage ships with it)
    assert sorted(p.relative_to(site) for p in _source_files(shipped)) == before

    # the same numbers as the committed data and as the demo run in the checkout
    gpkg = ROOT / LAYERS / "data" / scenario.DEMO_GPKG_NAME
    counts = {row["id"]: row["count"] for row in summary["layers"]}
    assert counts == {
        name: pyogrio.read_info(gpkg, layer=name)["features"] for name in scenario.DEMO_LAYERS
    }
    assert summary["population"]["demand_points"] == counts["demand"]
    in_tree = tmp_path / "in_tree"
    proc = run(sys.executable, "-m", "geo_minzheng.cli", "demo", "--out", str(in_tree), cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reference = json.loads((in_tree / "summary.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in summary.items() if k not in RUN_SPECIFIC} == {
        k: v for k, v in reference.items() if k not in RUN_SPECIFIC
    }
