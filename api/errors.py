"""One table from domain errors to HTTP status codes, and RFC 9457 problem+json bodies.

The core never raises HTTP errors; routes let domain errors propagate and the
handlers here turn them into ``application/problem+json`` with a bilingual title and the
domain message as ``detail``. Unexpected errors become a bare 500: no stack trace, no path.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo_minzheng._errors import (
    CapacityError,
    CatalogError,
    ConflictError,
    CRSError,
    GeoMinzhengError,
    LayerReadError,
    LayerValidationError,
    NetworkError,
    PartitionError,
    PermissionDeniedError,
    SolverError,
    StoreError,
    UnknownIdError,
    UnreachableError,
)

log = logging.getLogger("geo_minzheng.api")

PROBLEM_JSON = "application/problem+json"

#: Domain error -> HTTP status; the first matching class (in order) wins.
STATUS_BY_ERROR: tuple[tuple[type[Exception], int], ...] = (
    (UnknownIdError, 404),
    (ConflictError, 409),
    (PermissionDeniedError, 403),
    (LayerValidationError, 422),
    (LayerReadError, 422),
    (CRSError, 400),
    (UnreachableError, 422),
    (CapacityError, 422),
    (NetworkError, 422),
    # the solver found no optimum for these inputs (infeasible, too large): say so, with why
    (SolverError, 422),
    (CatalogError, 500),
    (StoreError, 503),
    # a province run's partition failed every retry on the cluster: try again later (resumes)
    (PartitionError, 503),
)
#: Errors whose messages may name files or servers: the client gets a generic detail.
_HIDE_DETAIL = (CatalogError, StoreError)

TITLES = {
    400: "请求参数错误 / Bad request",
    401: "需要有效的 API 密钥 / API key required",
    403: "权限不足 / Forbidden",
    404: "未找到 / Not found",
    405: "不支持的方法 / Method not allowed",
    409: "数据冲突 / Conflict",
    413: "请求过大 / Request too large",
    415: "不支持的媒体类型 / Unsupported media type",
    422: "数据无法处理 / Unprocessable content",
    428: "缺少版本号 / Precondition required",
    429: "请求过于频繁 / Too many requests",
    500: "服务器内部错误 / Internal server error",
    503: "服务暂不可用 / Service unavailable",
}


class ApiProblem(Exception):
    """An HTTP problem raised by the API layer itself (bad parameter, missing key, ...)."""

    def __init__(
        self, status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    """A problem+json body."""
    return {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }


def problem_response(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSONResponse carrying a problem+json body."""
    return JSONResponse(
        problem(status, detail, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def status_for(exc: BaseException) -> int:
    """The HTTP status of a domain error (500 for anything not in the table)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def domain_problem(exc: GeoMinzhengError) -> tuple[int, dict[str, Any]]:
    """Status and body for a domain error (also used for failed jobs)."""
    status = status_for(exc)
    hidden = isinstance(exc, _HIDE_DETAIL) and not isinstance(exc, ConflictError)
    if hidden or status == 500:
        log.error("domain error %s: %s", type(exc).__name__, exc)
        detail = "the server could not complete the request; see the server log"
        if isinstance(exc, StoreError):
            detail = "the data store is unavailable or refused the write; see the server log"
        return status, problem(status, detail)
    extra: dict[str, Any] = {}
    if isinstance(exc, LayerValidationError):
        extra["problems"] = [
            {"record": p.record, "field": p.field, "expected": p.expected, "found": p.found,
             "code": p.code}
            for p in exc.problems
        ]  # fmt: skip
    return status, problem(status, str(exc), **extra)


#: File paths in a message (two or more separators), replaced before a message reaches a client.
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.\-~]+){2,}[\\/]?")


def unexpected_problem(exc: BaseException, *, what: str = "the analysis") -> dict[str, Any]:
    """A 500 problem body that says what went wrong (type and message), paths removed.

    For failures a job reports after the request that queued it has long been answered: the
    client cannot see the server log, so "failed unexpectedly" alone would tell it nothing.
    """
    text = _PATH.sub("<path>", str(exc).splitlines()[0] if str(exc) else "")[:300]
    detail = f"{what} failed: {type(exc).__name__}" + (f": {text}" if text else "")
    return problem(500, detail)


def _request_validation_status(exc: RequestValidationError) -> int:
    locations = [err.get("loc", ("",))[0] for err in exc.errors()]
    return 422 if locations and all(loc == "body" for loc in locations) else 400


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:10]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {text}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the exception handlers on ``app``."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extra)

    @app.exception_handler(GeoMinzhengError)
    async def _domain(request: Request, exc: GeoMinzhengError) -> JSONResponse:
        status, body = domain_problem(exc)
        return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status = _request_validation_status(exc)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()[:20]
        ]
        return problem_response(status, _describe(list(exc.errors())), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such resource: {request.url.path}"
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "unexpected server error; see the server log")
