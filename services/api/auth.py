"""Who may call the API: bearer tokens with a `read` or `write` scope (an aiohttp middleware).

Reads (GET, HEAD, OPTIONS) need `read`, everything else `write`; `write` implies `read`.
The probes, Prometheus `/metrics`, the page shell `/` and the OpenAPI document stay
public. A browser never attaches a bearer token by itself, so a cross-site form POST
carries none and changes nothing. When authentication is explicitly disabled, mutating
routes still demand a JSON (or, for a submission, YAML) content type: a browser cannot
send one cross-site without a CORS preflight, which this API never grants.

Nothing here logs a token or the Authorization header.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter

from helios.auth_tokens import (
    READ,
    WRITE,
    TokenEntry,
    TokenFileError,
    allows,
    bearer_token,
    parse_tokens,
    scope_of,
)
from helios.settings import AuthSettings
from services.api.dags import YAML_TYPES
from services.api.page import ASSET_ROUTE, PAGE_ROUTES
from services.api.problems import Handler, problem_response

log = logging.getLogger(__name__)

# Counted, not logged per request: a flood of bad tokens must not flood the log.
REFUSED = Counter("helios_api_auth_refused_total", "Requests refused by authentication.",
                  ["reason"])

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Route patterns (aiohttp's `canonical`), so `//healthz` or an encoded path cannot slip by.
PUBLIC_ROUTES = frozenset({"/", "/healthz", "/readyz", "/metrics", "/api/v1/openapi.json",
                           # The web page's shell and assets: it must load to ask for a token.
                           *PAGE_ROUTES, ASSET_ROUTE})
SUBMIT_ROUTE = "/api/v1/dags"
REALM = 'Bearer realm="helios"'
SECURITY_SCHEME = "bearerAuth"

NO_TOKENS = (
    "the API needs bearer tokens: set HELIOS_AUTH_TOKENS_FILE to a file of `scope token` lines "
    "(scope read or write), or set HELIOS_AUTH_DISABLED=true to run without authentication "
    "(only where nobody else can reach the API)"
)


class AuthConfigError(RuntimeError):
    """The API cannot start with this authentication setup (the message says why)."""


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def required_scope(method: str, route: str | None) -> str | None:
    """The scope a request needs; None for the public routes."""
    if method in READ_METHODS:
        return None if route in PUBLIC_ROUTES else READ
    return WRITE


def _stamp(path: Path) -> tuple[int, int, int, int]:
    # A Kubernetes Secret update swaps a symlink: stat() follows it to a new inode.
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


def load_tokens(path: Path) -> tuple[tuple[int, int, int, int], list[TokenEntry]]:
    """The file's stamp and entries; AuthConfigError (never echoing a token) if unusable."""
    try:
        stamp = _stamp(path)
        entries = parse_tokens(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(f"cannot read HELIOS_AUTH_TOKENS_FILE {path}: "
                              f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    except TokenFileError as exc:
        raise AuthConfigError(f"{exc} (HELIOS_AUTH_TOKENS_FILE {path})") from None
    if not entries:
        raise AuthConfigError(f"HELIOS_AUTH_TOKENS_FILE {path} lists no token; {NO_TOKENS}")
    return stamp, entries


def check_auth(settings: AuthSettings) -> None:
    """Raise AuthConfigError if the API must not start with these settings (secure by
    default: no tokens file and no explicit HELIOS_AUTH_DISABLED is a refusal)."""
    if settings.disabled:
        return
    try:
        if settings.tokens_file is None:
            raise AuthConfigError(NO_TOKENS)
        load_tokens(settings.tokens_file)
    except AuthConfigError as exc:
        log.error("the API cannot start: %s", exc)  # one plain line before the traceback
        raise


class TokenStore:
    """The tokens file's entries, re-read when the file changes (a rotated Secret).

    A changed file that does not parse keeps the previous tokens (and says so in the
    log); at start-up it is an error. Checks cost one stat() at most every `reload_s`."""

    def __init__(self, path: Path, reload_s: float = 1.0):
        self.path = path
        self.reload_s = reload_s
        self._stamp, self._entries = load_tokens(path)
        self._checked = time.monotonic()
        log.info("API tokens loaded", extra=self._counts())

    def _stat(self) -> tuple[int, int, int, int]:
        return _stamp(self.path)

    def _counts(self) -> dict[str, int]:
        return {f"{scope}Tokens": sum(e.scope == scope for e in self._entries)
                for scope in (READ, WRITE)}

    def entries(self) -> list[TokenEntry]:
        now = time.monotonic()
        if now - self._checked >= self.reload_s:
            self._checked = now
            self._maybe_reload()
        return self._entries

    def _maybe_reload(self) -> None:
        try:
            stamp = self._stat()
            if stamp == self._stamp:
                return
            text = self.path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("API tokens file unreadable, keeping the previous tokens: %s",
                        getattr(exc, "strerror", None) or type(exc).__name__)
            return
        self._stamp = stamp  # one warning per change, not one per second
        try:
            self._entries = parse_tokens(text)
        except TokenFileError as exc:
            log.warning("API tokens file not reloaded, keeping the previous tokens: %s", exc)
            return
        log.info("API tokens reloaded", extra=self._counts())
        if not self._entries:
            log.warning("the API tokens file lists no token: every request needing one is refused")


def unauthorized(request: web.Request, detail: str, error: str | None = None) -> web.Response:
    response = problem_response(401, "Unauthorized", detail, request.path)
    # RFC 6750 3.1: no error code when the request carried no credentials at all.
    response.headers["WWW-Authenticate"] = REALM + (f', error="{error}"' if error else "")
    return response


def forbidden(request: web.Request, needed: str) -> web.Response:
    response = problem_response(403, "Forbidden",
                                f"this token's scope does not allow this; it needs {needed!r}",
                                request.path)
    response.headers["WWW-Authenticate"] = f'{REALM}, error="insufficient_scope", scope="{needed}"'
    return response


def content_type_refusal(request: web.Request, route: str | None) -> web.Response | None:
    """Without tokens, a mutation must say it is JSON (or YAML, to submit): no browser
    sends that cross-site without a preflight, so a forged form or beacon gets a 415."""
    allowed = ("application/json", *YAML_TYPES) if route == SUBMIT_ROUTE else ("application/json",)
    if "Content-Type" in request.headers and request.content_type in allowed:
        return None
    return problem_response(415, "Unsupported Media Type",
                            f"send this request with Content-Type: {' or '.join(allowed)}",
                            request.path)


def auth_middleware(settings: AuthSettings) -> Middleware:
    """The middleware for these settings; raises AuthConfigError when the API must not start."""
    if settings.disabled:
        log.warning("API authentication is DISABLED (HELIOS_AUTH_DISABLED): anyone who reaches "
                    "the API can submit, cancel and retry runs")

        @web.middleware
        async def json_only(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method not in READ_METHODS:
                refusal = content_type_refusal(request, _route(request))
                if refusal is not None:
                    REFUSED.labels("content_type").inc()
                    return refusal
            return await handler(request)

        return json_only
    if settings.tokens_file is None:
        raise AuthConfigError(NO_TOKENS)
    store = TokenStore(settings.tokens_file, settings.reload_s)
    public_reads = settings.public_reads

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = required_scope(request.method, _route(request))
        if needed is None:
            return await handler(request)
        presented = bearer_token(request.headers.get("Authorization"))
        if presented is None:
            if needed == READ and public_reads:
                return await handler(request)
            REFUSED.labels("missing").inc()
            return unauthorized(request, "this route needs a bearer token: "
                                         "send Authorization: Bearer <token>")
        granted = scope_of(store.entries(), presented)
        if granted is None:
            REFUSED.labels("unknown").inc()
            return unauthorized(request, "unknown or revoked token", "invalid_token")
        if not allows(granted, needed):
            REFUSED.labels("scope").inc()
            return forbidden(request, needed)
        return await handler(request)

    return authenticate


def document_security(document: dict[str, Any]) -> dict[str, Any]:
    """Declare the bearer scheme, and the 401/403 answers, in the OpenAPI document."""
    document.setdefault("components", {})["securitySchemes"] = {SECURITY_SCHEME: {
        "type": "http", "scheme": "bearer",
        "description": "A token from HELIOS_AUTH_TOKENS_FILE. Scope `read` for GET routes "
                       "(unless HELIOS_AUTH_PUBLIC_READS), `write` for the others; write implies read.",
    }}
    document["security"] = [{SECURITY_SCHEME: []}]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {
                "description": "Missing or unknown bearer token (see WWW-Authenticate)",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": problem})
            if method.upper() not in READ_METHODS:
                responses.setdefault("403", {
                    "description": "The token lacks the `write` scope",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    "content": problem})
                responses.setdefault("415", {
                    "description": "With authentication disabled: not sent as JSON", "content": problem})
    return document
