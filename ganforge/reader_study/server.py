"""The reading web app (Starlette): one image at a time, answers into the study's SQLite store.

What the browser can get, and nothing else:

- ``/``, ``/reader.js``, ``/reader.css``: the page (the sign-in form and the viewer; no study data);
- ``POST /api/session`` with a reader's code: sets an HttpOnly cookie holding it;
- ``GET /api/state``: the reader's progress and current image id (``?position=k`` revisits an
  answered one where changes are allowed); ``POST /api/answer``; ``POST /api/logout``;
- ``GET /api/image/{id}``: the PNG of an image the reader has reached.

Every ``/api`` request needs a valid code (cookie or ``X-Reader-Code`` header). Image ids are
looked up in the manifest, never joined into a path from the request, so nothing outside
``STUDY/images`` can be served. The key is never read by the app: no response can hold it, and
no response depends on an image's source.

Requests from elsewhere are refused before they reach an endpoint (:class:`RequestGuard`): a
POST must come from the page's own origin (``Origin``/``Sec-Fetch-Site``; the SameSite cookie
alone leaves a ``text/plain`` form post from another site) and carry JSON; no body may exceed
:data:`MAX_BODY`; malformed or too deeply nested JSON is a 400; and an address that keeps
presenting wrong session codes is slowed down (:class:`Throttle`: 429 with ``Retry-After``).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from importlib import resources
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import jsontext
from ..errors import GanforgeError
from .store import AnswerRefused, Reader, Store, normalise_code
from .study import Study

COOKIE = "ganforge_reader"
CODE_HEADER = "x-reader-code"
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'",
}
STATIC = {
    "/": ("index.html", "text/html"),
    "/reader.js": ("reader.js", "text/javascript"),
    "/reader.css": ("reader.css", "text/css"),
}


MAX_BODY = 64 * 1024  # bytes of a request body: an answer or a sign-in is a few hundred
FREE_FAILURES = 5  # wrong session codes an address may present before it is slowed down
MAX_LOCKOUT = 300.0  # seconds, the longest wait a run of wrong codes earns
_TRACKED_ADDRESSES = 10_000


class BadRequest(Exception):
    """A request refused before an endpoint handles it: its status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class RequestGuard:
    """Refuses cross-origin POSTs (403), POSTs that are not JSON (415) and oversized bodies (413)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                _check_request(Request(scope))
            except BadRequest as exc:
                await _error(exc.message, exc.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _check_request(request: Request) -> None:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise BadRequest(403, "cross-origin request refused")
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc not in _own_hosts(request):
        raise BadRequest(403, "cross-origin request refused")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise BadRequest(415, "send JSON (Content-Type: application/json)")


def _own_hosts(request: Request) -> set[str]:
    """The host[:port] the browser used: the Host header, or what a reverse proxy says it forwarded."""
    hosts = {request.headers.get("host", "")}
    forwarded = request.headers.get("x-forwarded-host")
    if forwarded:
        hosts.add(forwarded.split(",")[0].strip())
    return hosts - {""}


class Throttle:
    """Wrong session codes per client address: after :data:`FREE_FAILURES`, each costs a wait that doubles."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (count, wait until)

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before its next try (0: it may try now)."""
        _, until = self._failures.get(address, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, address: str) -> None:
        count = self._failures.pop(address, (0, 0.0))[0] + 1
        lockout = min(MAX_LOCKOUT, 2.0 ** (count - FREE_FAILURES)) if count >= FREE_FAILURES else 0.0
        self._failures[address] = (count, self.clock() + lockout)
        while len(self._failures) > _TRACKED_ADDRESSES:  # bounded memory, whoever knocks
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response (no caching: a shared computer keeps no images)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [
                    (k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class ReadingApp:
    """The endpoints, bound to one study and its store."""

    def __init__(self, study: Study):
        self.study = study
        self.settings = study.manifest.settings
        self.store = Store(study.answers_path)
        self.throttle = Throttle()
        self.pages = {
            path: (resources.files(__package__).joinpath("static", name).read_bytes(), media)
            for path, (name, media) in STATIC.items()
        }

    def asgi(self) -> ASGIApp:
        routes = [Route(path, self.page) for path in STATIC]
        routes += [
            Route("/api/session", self.sign_in, methods=["POST"]),
            Route("/api/logout", self.sign_out, methods=["POST"]),
            Route("/api/state", self.state),
            Route("/api/answer", self.answer, methods=["POST"]),
            Route("/api/image/{item}", self.image),
        ]
        return SecurityHeaders(RequestGuard(Starlette(routes=routes)))

    def _reader(self, request: Request, code: object = None) -> Reader | Response:
        """The signed-in reader, or the response refusing the request (401; 429 while throttled)."""
        address = request.client.host if request.client else ""
        wait = self.throttle.wait(address)
        if wait > 0:
            response = _error(f"too many wrong session codes; try again in {wait:.0f} s", 429)
            response.headers["retry-after"] = str(max(1, round(wait)))
            return response
        code = code if code is not None else request.headers.get(CODE_HEADER) or request.cookies.get(COOKIE)
        reader = self.store.reader(code) if isinstance(code, str) and code else None
        if reader is None:
            if code is not None:
                self.throttle.failed(address)
            return _error("sign in with your session code", 401)
        self.throttle.succeeded(address)
        return reader

    async def page(self, request: Request) -> Response:
        content, media = self.pages[request.url.path]
        return Response(content, media_type=media)

    async def sign_in(self, request: Request) -> Response:
        try:
            body = await _json(request)
        except BadRequest as exc:
            return _error(exc.message, exc.status)
        code = body.get("code", "") if isinstance(body, dict) else ""
        reader = self._reader(request, code)
        if isinstance(reader, Response):
            return _error("unknown session code", 401) if reader.status_code == 401 else reader
        response = JSONResponse({"reader": reader.name})
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, normalise_code(code), httponly=True, samesite="strict", secure=secure)
        return response

    async def sign_out(self, request: Request) -> Response:
        response = JSONResponse({})
        response.delete_cookie(COOKIE)
        return response

    def _state(self, reader: Reader, position: int | None = None) -> dict:
        answered = self.store.answers(reader)
        manifest = self.study.manifest
        if position is None or position >= len(answered):
            position = len(answered)
        done = position >= len(reader.order)
        previous = answered[position] if position < len(answered) else None
        return {
            "reader": reader.name,
            "title": manifest.title,
            "total": len(reader.order),
            "answered": len(answered),
            "position": position,
            "done": done,
            "item": None if done else reader.order[position],
            "answer": None
            if previous is None
            else {"call": previous.call, "confidence": previous.confidence, "finding": previous.finding},
            "confidence_levels": self.settings.confidence_levels,
            "findings": manifest.findings,
            "allow_changes": self.settings.allow_changes,
        }

    async def state(self, request: Request) -> Response:
        reader = self._reader(request)
        if isinstance(reader, Response):
            return reader
        position = None
        if "position" in request.query_params:
            if not self.settings.allow_changes:
                return _error("this study does not allow going back", 409)
            try:
                position = int(request.query_params["position"])
            except ValueError:
                return _error("position must be a whole number", 400)
            if position < 0:
                return _error("position must be ≥ 0", 400)
        return JSONResponse(self._state(reader, position))

    async def answer(self, request: Request) -> Response:
        reader = self._reader(request)
        if isinstance(reader, Response):
            return reader
        try:
            body = await _json(request)
        except BadRequest as exc:
            return _error(exc.message, exc.status)
        problem = self._invalid_answer(body)
        if problem or not isinstance(body, dict):
            return _error(problem or "the answer must be a JSON object", 400)
        try:
            self.store.record(
                reader,
                body["position"],
                body["call"],
                body["confidence"],
                body.get("finding"),
                self.settings.allow_changes,
            )
        except AnswerRefused as exc:
            return _error(str(exc), 409)
        return JSONResponse(self._state(reader))

    def _invalid_answer(self, body: object) -> str | None:
        if not isinstance(body, dict):
            return "the answer must be a JSON object"
        if body.get("call") not in ("real", "generated"):
            return "call must be 'real' or 'generated'"
        levels = self.settings.confidence_levels
        confidence, position = body.get("confidence"), body.get("position")
        if type(confidence) is not int or not 1 <= confidence <= levels:
            return f"confidence must be a whole number from 1 to {levels}"
        if type(position) is not int:
            return "position must be a whole number"
        finding = body.get("finding")
        if self.settings.ask_finding and finding not in self.study.manifest.findings:
            return f"finding must be one of {', '.join(self.study.manifest.findings)}"
        if not self.settings.ask_finding and finding is not None:
            return "this study does not ask for a finding"
        return None

    async def image(self, request: Request) -> Response:
        reader = self._reader(request)
        if isinstance(reader, Response):
            return reader
        item = request.path_params["item"]
        reached = reader.order[: self.store.progress(reader) + 1]
        if item not in reached:  # unknown ids, any path, and images further on than the reader has come
            return _error("no such image", 404)
        self.store.shown(reader, item)
        return Response(self.study.image_path(item).read_bytes(), media_type="image/png")


async def _json(request: Request) -> object:
    """The request's JSON body, read at most :data:`MAX_BODY` bytes far (a missing Content-Length too)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    try:
        return jsontext.loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "the request body is not valid JSON") from exc


def create_app(study: Study) -> ASGIApp:
    """The ASGI app serving ``study`` (uvicorn runs it; tests drive it in-process)."""
    return ReadingApp(study).asgi()


def check_address(host: str, port: int) -> None:
    """Fail with one line, before uvicorn starts, when ``host:port`` cannot be listened on (in use, unknown)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or exc
        raise GanforgeError(f"cannot listen on {host}:{port} ({reason}); choose another host or port") from exc


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
