"""The exception tree of geo-minzheng: domain errors that also subclass builtins, never HTTP."""

from __future__ import annotations

from dataclasses import dataclass


class GeoMinzhengError(Exception):
    """Base class of every error raised on purpose by geo-minzheng."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a layer: which record, which field, what was expected and found."""

    record: str
    field: str
    expected: str
    found: str
    code: str = "invalid"

    def __str__(self) -> str:
        return f"{self.record}: {self.field} must be {self.expected}, got {self.found}"


class LayerValidationError(GeoMinzhengError, ValueError):
    """A layer has one or more problems; ``problems`` lists every one of them."""

    def __init__(self, layer: str, problems: list[Problem]) -> None:
        self.layer = layer
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"layer '{layer}' has {len(self.problems)} problem(s):\n{shown}{more}")


class LayerReadError(GeoMinzhengError, ValueError):
    """A layer file cannot be read at all: empty, truncated, undecodable, not its format, ...

    ``path`` is the file, ``code`` says what is wrong (``geo_minzheng.io`` lists the codes) and
    ``values`` holds the details a report words in Chinese or English (line, column, ...).
    """

    def __init__(
        self, path: str, code: str, reason: str, values: dict[str, object] | None = None
    ) -> None:
        self.path = path
        self.code = code
        self.reason = reason
        self.values = dict(values or {})
        super().__init__(f"cannot read {path}: {reason}")


class CRSError(GeoMinzhengError, ValueError):
    """A coordinate reference system is missing, unknown or unusable."""


class CRSMismatchError(CRSError):
    """Two layers that meet are in different CRSs."""


class CatalogError(GeoMinzhengError, ValueError):
    """The layer catalog is malformed or names something that does not exist."""


class UnknownIdError(GeoMinzhengError, KeyError):
    """An ID (layer, record, facility, node) that does not exist was asked for."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class NetworkError(GeoMinzhengError, ValueError):
    """A street network could not be built or is unusable."""


class UnreachableError(GeoMinzhengError, ValueError):
    """A point cannot be reached on the network (too far from a road, or cut off)."""


class CapacityError(GeoMinzhengError, ValueError):
    """Capacities are impossible (negative, or too small for the demand they must serve)."""


class SolverError(GeoMinzhengError, RuntimeError):
    """An optimisation solver did not reach an optimal solution."""


class StoreError(GeoMinzhengError, RuntimeError):
    """The persistent store failed or refused a write."""


class ConflictError(StoreError):
    """A write was based on a stale version of a record."""


class PermissionDeniedError(GeoMinzhengError, PermissionError):
    """The caller lacks the role an action needs."""


class PartitionError(GeoMinzhengError, RuntimeError):
    """A partition of a province run failed after every retry (``failures`` lists each try)."""

    def __init__(self, message: str, failures: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []
