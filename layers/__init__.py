"""Installed as ``geo_minzheng.demo_layers``: the demo catalog and data (importlib.resources).

No code. The file makes this folder a regular package, which setuptools' editable install
(``pip install -e .``) can map from its own place at the repository's top; see
``geo_minzheng/resources.py`` and ``pyproject.toml`` (``package-dir``).
"""
