"""geo-minzheng: spatial layers and street-network analysis for civil-affairs bureaus."""

#: The one place the version is written: pyproject.toml reads it (``[tool.setuptools.dynamic]``)
#: and the API reports it.
__version__ = "0.1.0"
