"""Pydantic models of the API's requests and responses (OGC API – Features, jobs, problems)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from geo_minzheng.store import MAX_FEATURE_ID_LENGTH

#: Integers the store keeps exactly (64-bit signed, as SQLite and PostgreSQL bigint hold them).
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class Link(BaseModel):
    """A hypermedia link (OGC API – Common)."""

    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class LandingPage(BaseModel):
    """The API's entry point."""

    title: str
    description: str
    links: list[Link]


class Conformance(BaseModel):
    """Conformance classes the API implements."""

    conformsTo: list[str]  # noqa: N815 - OGC name


class SpatialExtent(BaseModel):
    bbox: list[list[float]]
    crs: str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


class Extent(BaseModel):
    spatial: SpatialExtent | None = None


class Collection(BaseModel):
    """One layer as an OGC API – Features collection, with its kind and editability.

    ``editable``/``editableFields`` say what a key with the editor role may change in existing
    records; ``geometryEditable``, ``allowCreate`` and ``allowDelete`` whether it may also move
    records, add them or remove them (the catalog's flags; an admin may always).
    """

    id: str
    title: str
    description: str
    links: list[Link]
    extent: Extent
    itemType: str = "feature"  # noqa: N815 - OGC name
    crs: list[str] = ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"]
    kind: str
    numberOfFeatures: int  # noqa: N815 - OGC style
    editable: bool
    editableFields: list[str]  # noqa: N815 - OGC style
    geometryEditable: bool = False  # noqa: N815 - OGC style
    allowCreate: bool = False  # noqa: N815 - OGC style
    allowDelete: bool = False  # noqa: N815 - OGC style
    scenario: bool
    queryables: list[str]


class Collections(BaseModel):
    """Every layer."""

    links: list[Link]
    collections: list[Collection]


class Feature(BaseModel):
    """A GeoJSON Feature (RFC 7946); ``version`` is what an update must send back (If-Match)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["Feature"] = "Feature"
    id: str | None = None
    geometry: dict[str, Any] | None
    properties: dict[str, Any]
    version: int | None = None
    links: list[Link] | None = None


class FeatureCollection(BaseModel):
    """A page of GeoJSON features with OGC paging members."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    numberMatched: int | None = None  # noqa: N815 - OGC name
    numberReturned: int | None = None  # noqa: N815 - OGC name
    timeStamp: str | None = None  # noqa: N815 - OGC name
    links: list[Link] = Field(default_factory=list)


def _json_value_problem(value: Any, where: str) -> str | None:
    """Why a parsed JSON value cannot be stored as sent, or None (walked without recursion).

    Python's JSON reader accepts NaN, Infinity, integers of any size and lone surrogates
    (``"\\ud800"``), none of which a record can hold: they would be stored as null, rounded, or
    fail in the database. Refusing them here names the member that is wrong.
    """
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, float) and not math.isfinite(item):
            return f"{path}: NaN and infinities are not numbers a record can hold; got {item}"
        if isinstance(item, int) and not _INT_MIN <= item <= _INT_MAX:
            digits = len(str(abs(item)))
            return (
                f"{path}: integers must lie between -2^63 and 2^63-1 (64 bits); "
                f"got one of {digits} digits"
            )
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"{path}: text must be valid Unicode; got a lone surrogate (\\ud800-\\udfff)"
        elif isinstance(item, dict):
            for key, member in item.items():
                stack.append((key, f"{path} (a key)"))
                stack.append((member, f"{path}.{key}"))
        elif isinstance(item, list):
            stack.extend((member, f"{path}[{i}]") for i, member in enumerate(item))
    return None


class FeatureIn(BaseModel):
    """A feature sent to create, replace or update a record.

    For updates, ``version`` (or the If-Match header) is the version the client read; a stale
    version is refused with 409. Values a record cannot hold (NaN, infinities, integers beyond
    64 bits, text with lone surrogates) are refused with 422 naming the member.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["Feature"] = "Feature"
    id: str | None = Field(default=None, max_length=MAX_FEATURE_ID_LENGTH)
    geometry: dict[str, Any] | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    version: int | None = Field(default=None, ge=1, le=_INT_MAX)

    @model_validator(mode="after")
    def _storable(self) -> FeatureIn:
        for name in ("id", "geometry", "properties"):
            why = _json_value_problem(getattr(self, name), name)
            if why is not None:
                raise ValueError(why)
        return self


class ProblemDetail(BaseModel):
    """An error (RFC 9457 problem details): bilingual title, English detail."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str


class JobStatus(BaseModel):
    """A long analysis: poll until ``status`` is succeeded or failed."""

    id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(ge=0, le=1)
    message: str
    created: str
    finished: str | None
    error: dict[str, Any] | None = None
    links: list[Link]


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ProblemDetail, "description": "bad parameter"},
    404: {"model": ProblemDetail, "description": "unknown collection or feature"},
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    401: {"model": ProblemDetail, "description": "missing or invalid API key"},
    403: {"model": ProblemDetail, "description": "the key's role may not do this"},
    409: {"model": ProblemDetail, "description": "stale version or duplicate ID"},
    413: {"model": ProblemDetail, "description": "request too large"},
    422: {"model": ProblemDetail, "description": "the record breaks its layer kind's rules"},
    428: {"model": ProblemDetail, "description": "no version given (If-Match or version)"},
}
