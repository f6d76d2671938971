"""RFC 9457 problem details: every refusal is JSON with a reason a person can act on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gsomia.core.errors import GsomiaError, NotFound, Refused

MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


# A file path in a message: absolute, or relative from ./ or ../ (an agreement file's, a
# database's). The command line shows it to the operator who named it; an API client is
# told the file's name alone. Text such as KOR/JPN or 1/2 follows a letter or digit: kept.
_PATH = re.compile(r"(?<![\w.~-])(?:\.{1,2})?/+[^\s'\"(),;/][^\s'\"(),;]*")


def without_paths(text: str) -> str:
    """``text`` with every file path in it cut down to its last part (the file's own name)."""
    return _PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def problem_response(status: int, title: str, detail: str, instance: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://gsomia.invalid/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": without_paths(detail),  # the node's directories are no business of a client's
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def validation_detail(raw: Sequence[Any], *prefix: str) -> tuple[str, list[dict[str, Any]]]:
    """A validation failure as a problem states it: the first error as ``where.it.is: message``
    (``prefix`` first: ``body``, ``note``), and every error with its location."""
    errors = [{"loc": [*prefix, *(str(p) for p in e.get("loc", ()))], "msg": str(e.get("msg", ""))} for e in raw]
    first = errors[0] if errors else {"loc": list(prefix), "msg": "invalid request"}
    return f"{'.'.join(first['loc'])}: {first['msg']}", errors


def refusal_response(exc: GsomiaError, instance: str | None = None) -> JSONResponse:
    """``exc`` as its class answers it (``status``, ``title``: ``core.errors``).

    A denial carries the reasons its subject may be shown (the ledger has the full text). Where
    the title is general, ``error`` names the class; a 404 names nothing more, so that an item
    a user may not know of answers exactly as one that does not exist."""
    kind = type(exc)
    extra: dict[str, Any]
    if isinstance(exc, Refused):
        extra = {"decision": "deny", "reasons": [{"rule": r.rule, "text": r.text} for r in exc.shown.reasons]}
    elif isinstance(exc, NotFound):
        extra = {}
    else:
        extra = {"error": kind.__name__}
    return problem_response(kind.status, kind.title, str(exc), instance, **extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(GsomiaError)
    async def _gsomia(request: Request, exc: GsomiaError) -> JSONResponse:
        return refusal_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = validation_detail(exc.errors())
        return problem_response(400, "Invalid request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), str(exc.detail), request.url.path)

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        # The database did not answer: restarted, failing over, or SQLite's lock held past
        # the busy timeout. Not a bug in the request or the node: say when to try again.
        response = problem_response(
            503, "Database unavailable", "the node's database did not answer; try again", request.url.path
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: say so without leaking internals.
        return problem_response(500, "Internal error", "the node failed to handle this request", request.url.path)
