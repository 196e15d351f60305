"""geo-minzheng: spatial layers and street-network analysis for civil-affairs bureaus."""

__version__ = "0.1.0"
