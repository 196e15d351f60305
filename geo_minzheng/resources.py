"""Where the files shipped inside the installed package are: the demo catalog and the demo data.

The repository keeps them at its top, in ``layers/`` (the design card's layout); the distribution
ships that folder as the package ``geo_minzheng.demo_layers`` (``package-dir`` in pyproject.toml),
so a wheel install and an editable install (``pip install -e .``, as ``dev.py`` does) both find it
through importlib.resources and nothing is located relative to a source folder. setuptools installs
unzipped, so the files are a real directory; a zipped install is refused with a clear error,
because GDAL (pyogrio) and the catalog's relative paths need real files.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from geo_minzheng._errors import CatalogError

#: The package holding the demo catalog (``catalog.yml``) and ``data/``.
DEMO_LAYERS_PACKAGE = "geo_minzheng.demo_layers"
#: File name of the demo catalog inside :data:`DEMO_LAYERS_PACKAGE`.
DEMO_CATALOG_NAME = "catalog.yml"


def demo_layers_dir() -> Path:
    """The installed folder holding the demo catalog and ``data/`` (the repository's ``layers/``).

    Raises
    ------
    CatalogError
        If the package is not installed (a bare checkout on ``sys.path``) or is not a real folder.
    """
    try:
        root = importlib.resources.files(DEMO_LAYERS_PACKAGE)
    except ModuleNotFoundError as exc:
        msg = (
            f"demo layers '{DEMO_LAYERS_PACKAGE}': location must be an installed package, "
            f"got none ({exc}); install geo-minzheng with `pip install .` or `pip install -e .` "
            "(`python3 dev.py` does) / 演示图层未安装，请先安装 geo-minzheng"
        )
        raise CatalogError(msg) from exc
    if not isinstance(root, Path) or not root.is_dir():
        msg = (
            f"demo layers '{DEMO_LAYERS_PACKAGE}': location must be a folder on disk, "
            f"got {root!r}; install geo-minzheng unzipped (pip does) / 演示图层须安装为普通目录"
        )
        raise CatalogError(msg)
    return root


def demo_catalog_path() -> Path:
    """The demo layer catalog shipped with the package (the repository's ``layers/catalog.yml``)."""
    return demo_layers_dir() / DEMO_CATALOG_NAME


def demo_data_dir() -> Path:
    """The demo city's data folder (``changchun/``, ``admin_codes/``, the demo GeoPackage)."""
    return demo_layers_dir() / "data"
