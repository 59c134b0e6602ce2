"""The observer's HTTP server: a read-only page, JSON API and metrics.

Guarantees
----------
* Runs in its own daemon thread (``pykka-registry-observer-PORT``) plus one
  short-lived thread per request (HTTP/1.0: each connection carries one
  request and closes). Each connection has deadlines: its request line and
  headers within :data:`READ_DEADLINE_S` of the accept, its whole answer
  taken within :data:`RESPONSE_DEADLINE_S`; past one it is cut, so a client
  that sends half a request and waits, trickles bytes, or never reads holds
  a thread for a bounded time only. At most :data:`MAX_CONNECTIONS`
  connections are served at once; one more is closed as it arrives.
* :meth:`Observer.stop` is bounded: it cuts every open connection (a
  blocked read or write returns at once), joins the request threads and the
  server thread with its timeout, and cancels the observer's event
  subscriptions: it leaves no thread of its own behind (a request busy
  building an answer finishes it first, well under a second).
* Read-only: only ``GET`` and ``HEAD`` are served (anything else gets 405);
  no endpoint changes a registry, a supervisor or Redis.
* Bound to loopback unless the caller names another host; then a token is
  required (one is generated when none is given) and a warning is logged at
  start saying where it listens. A token, when set, is required on every
  endpoint but the static script and stylesheet (code, not data): as
  ``?token=`` or ``Authorization: Bearer <token>``, compared in constant
  time. On loopback without a token, requests whose ``Host`` header is not a
  loopback name are refused (a web page elsewhere cannot read the data
  through DNS rebinding).
* Access is checked before anything else: a refused request (401 or 403)
  reads no registry, refreshes no cache and does not start the event
  subscriptions; it costs a header check and a short answer.
* The page builds its DOM with ``textContent`` only and is served with a
  Content-Security-Policy that allows no inline script and no other origin:
  metadata such as ``<script>`` renders as text.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Optional
from urllib.parse import parse_qs, quote, urlsplit

from pykka_registry.observer._metrics import render_metrics
from pykka_registry.observer._snapshot import DEFAULT_LIMIT, ClusterSource, Snapshotter
from pykka_registry.observer._watch import EventLog, Watch

__all__ = ["Observer", "serve"]

logger = logging.getLogger("pykka_registry")

REQUEST_TIMEOUT_S = 10.0  # each socket operation (a backstop; the deadlines below cut first)
READ_DEADLINE_S = 5.0
RESPONSE_DEADLINE_S = 30.0
MAX_CONNECTIONS = 64
IDLE_S = 60.0
EVENT_MODES = ("on_demand", "always")
DEFAULT_EVENTS = 1000
MAX_EVENTS_PER_RESPONSE = 1000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

_STATIC = {
    "/": ("page.html", "text/html; charset=utf-8"),
    "/index.html": ("page.html", "text/html; charset=utf-8"),
    "/static/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/static/page.css": ("page.css", "text/css; charset=utf-8"),
}
_PUBLIC = ("/static/page.js", "/static/page.css")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _load_static(filename: str) -> bytes:
    return (resources.files("pykka_registry.observer") / "static" / filename).read_bytes()


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    return host.startswith("127.") and host.replace(".", "").isdigit()


class _HTTPServer(ThreadingHTTPServer):
    """The listening socket and its connections.

    Every connection has a deadline: :attr:`Observer.read_deadline_s` from
    its accept to send its request line and headers, then
    :attr:`Observer.response_deadline_s` to take the answer. The server
    thread shuts down (``SHUT_RDWR``) each connection past its deadline,
    which wakes the request thread blocked on it; :meth:`close_connections`
    does so for all of them at stop. Request threads are tracked here and
    joined by :meth:`Observer.stop` with a timeout, not by ``server_close``.
    """

    daemon_threads = True  # joined by Observer.stop (bounded), never by the interpreter
    block_on_close = False
    observer: Observer

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, handler)
        self._conn_lock = threading.Lock()
        #: open connection -> monotonic deadline
        self._conns: dict[socket.socket, float] = {}
        self._request_threads: set[threading.Thread] = set()
        self._closing = False

    def process_request(self, request: Any, client_address: Any) -> None:
        """The server thread, at each accept: one thread per connection."""
        with self._conn_lock:
            # Past max_connections a new connection is closed at once: a
            # flood of stalled clients holds a bounded number of threads.
            if self._closing or len(self._conns) >= self.observer.max_connections:
                self.shutdown_request(request)
                return
            self._conns[request] = time.monotonic() + self.observer.read_deadline_s
            thread = threading.Thread(target=self._run_request, args=(request, client_address),
                                      name="pykka-registry-observer-request", daemon=True)
            self._request_threads.add(thread)
        thread.start()

    def _run_request(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conns.pop(request, None)
                self._request_threads.discard(threading.current_thread())

    def headers_read(self, request: Any) -> None:
        """A request thread has read its request: give it time to answer."""
        with self._conn_lock:
            if request in self._conns:
                self._conns[request] = time.monotonic() + self.observer.response_deadline_s

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A connection cut at its deadline or at stop fails in the handler's
        # write: expected, not worth a traceback on stderr.
        logger.debug("observer: a request from %s failed", client_address, exc_info=True)

    def service_actions(self) -> None:
        """Called by serve_forever between polls (the server thread)."""
        now = time.monotonic()
        with self._conn_lock:
            late = [conn for conn, deadline in self._conns.items() if deadline <= now]
            for conn in late:
                self._conns[conn] = float("inf")  # cut once
        for conn in late:
            _cut(conn)
        self.observer._check_idle()

    def close_connections(self) -> list[threading.Thread]:
        """Refuse new connections, cut the open ones; return the request
        threads still running (any thread)."""
        with self._conn_lock:
            self._closing = True
            conns = list(self._conns)
            threads = list(self._request_threads)
        for conn in conns:
            _cut(conn)
        return threads


def _cut(conn: socket.socket) -> None:
    """Wake whoever blocks on ``conn`` (its recv returns b"", its send fails)."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by its thread


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = REQUEST_TIMEOUT_S
    server_version = "pykka-registry-observer"
    sys_version = ""

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok:  # the request line and headers are in: the answer's deadline starts
            self.server.headers_read(self.request)
        return ok

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("observer: %s - %s", self.address_string(), format % args)

    # -- methods ------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _refuse_method(self) -> None:
        self._send(405, b'{"error": "the observer is read-only: GET and HEAD only"}\n',
                   "application/json", body=True, extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    # -- routing ------------------------------------------------------------------

    def _serve(self, body: bool) -> None:
        observer = self.server.observer
        parts = urlsplit(self.path)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        # Access first: a refused request must not start the event
        # subscriptions, refresh a cache or read a registry (it costs nothing).
        if path not in _PUBLIC:
            problem = observer._check_access(query, self.headers)
            if problem is not None:
                status, message = problem
                extra = {"WWW-Authenticate": 'Bearer realm="pykka-registry observer"'}
                self._json(status, {"error": message}, body,
                           extra if status == 401 else None)
                return
        if path.startswith("/api/") or path == "/metrics":
            observer._touch()
        try:
            if path in _STATIC:
                filename, content_type = _STATIC[path]
                self._send(200, _load_static(filename), content_type, body)
            elif path == "/api/snapshot":
                self._json(200, observer.snapshot(
                    query=_one(query, "q", ""),
                    namespace=_one(query, "namespace", None),
                    offset=_int(query, "offset", 0),
                    limit=_int(query, "limit", DEFAULT_LIMIT),
                ), body)
            elif path == "/api/events":
                self._json(200, observer.events(
                    since=_int(query, "since", 0),
                    namespace=_one(query, "namespace", None),
                    limit=_int(query, "limit", 200),
                ), body)
            elif path == "/metrics":
                self._send(200, render_metrics(observer._snapshotter).encode(),
                           "text/plain; version=0.0.4; charset=utf-8", body)
            else:
                self._json(404, {"error": f"no such endpoint: {path[:200]}"}, body)
        except _BadRequest as error:
            self._json(400, {"error": str(error)}, body)
        except Exception:
            logger.exception("observer: %s failed", path[:200])
            self._json(500, {"error": "internal error (see the application's log)"}, body)

    # -- responses ----------------------------------------------------------------

    def _json(self, status: int, value: Any, body: bool,
              extra: Optional[dict[str, str]] = None) -> None:
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode()
        self._send(status, data, "application/json; charset=utf-8", body, extra)

    def _send(self, status: int, data: bytes, content_type: str, body: bool,
              extra: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", _CSP)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            try:
                self.wfile.write(data)
            except OSError:
                pass  # the client went away


class _BadRequest(ValueError):
    pass


def _one(query: dict[str, list[str]], key: str, default: Any) -> Any:
    values = query.get(key)
    if not values:
        return default
    return values[-1][:500]


def _int(query: dict[str, list[str]], key: str, default: int) -> int:
    text = _one(query, key, None)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _BadRequest(f"{key} must be an integer, got {text[:50]!r}") from None
    if value < 0:
        raise _BadRequest(f"{key} must be >= 0, got {value}")
    return value


class Observer:
    """A running observer. Create one with :func:`serve` or
    :meth:`Registry.observe <pykka_registry.Registry.observe>`.

    ``url`` opens the page (it carries ``?token=`` when a token is set);
    ``token`` is the token or ``None``. :meth:`stop` (or leaving a ``with``
    block) shuts it down. Methods may be called from any thread.
    """

    def __init__(self, host: str, port: int, token: Optional[str], max_events: int,
                 events: str = "on_demand") -> None:
        self.host = host
        self.token = token
        self.events_mode = events
        #: With ``events="on_demand"``: seconds without a data request after
        #: which the event subscriptions are cancelled.
        self.idle_s = IDLE_S
        #: Seconds a connection has, from its accept, to send its request
        #: line and headers; then it is cut.
        self.read_deadline_s = READ_DEADLINE_S
        #: Seconds a request has, once read, to take its whole answer.
        self.response_deadline_s = RESPONSE_DEADLINE_S
        #: Connections served at once; more are closed as they arrive.
        self.max_connections = MAX_CONNECTIONS
        self._last_request = -1.0
        self._log = EventLog(max_events)
        self._watches: list[Watch] = []
        self._clusters: list[ClusterSource] = []
        self._snapshotter = Snapshotter(self._watches, self._clusters, self._log,
                                        time.monotonic())
        self._lock = threading.Lock()
        self._stopped = False
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        self._http = server_class((host, port), _Handler)
        self._http.observer = self
        self.port: int = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"pykka-registry-observer-{self.port}", daemon=True,
        )

    def _start(self) -> None:
        self._thread.start()

    # -- what it shows ----------------------------------------------------------------

    def add(self, registry: Any) -> None:
        """Show one more registry (subscribes to its events from now on)."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the observer is stopped")
            if any(w.registry is registry for w in self._watches):
                return
            watch = Watch(registry, self._log)
            if self.events_mode == "always" or self._recording():
                watch.subscribe()
            self._watches.append(watch)

    def add_redis(self, client: Any, prefix: str = "pykka_registry", url: str = "") -> None:
        """Show the nodes, names and groups of a Redis prefix, read with
        ``client`` (a ``redis.Redis``) from outside the cluster: nothing is
        registered or joined."""
        with self._lock:
            if self._stopped:
                raise RuntimeError("the observer is stopped")
            self._clusters.append(ClusterSource(client, prefix, url))

    @property
    def registries(self) -> list[Any]:
        """The registries shown."""
        return [w.registry for w in self._watches]

    @property
    def url(self) -> str:
        """The page's address (with ``?token=`` when a token is set)."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        url = f"http://{host}:{self.port}/"
        return url if self.token is None else f"{url}?token={quote(self.token, safe='')}"

    def snapshot(self, query: str = "", namespace: Optional[str] = None, offset: int = 0,
                 limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """What ``/api/snapshot`` returns (see docs/observer.md)."""
        return self._snapshotter.snapshot(query, namespace, offset, limit)

    def events(self, since: int = 0, namespace: Optional[str] = None,
               limit: int = 200) -> dict[str, Any]:
        """What ``/api/events`` returns: events after ``since``, newest first."""
        limit = max(0, min(limit, MAX_EVENTS_PER_RESPONSE))
        return {"latest": self._log.latest, "seen_total": self._log.seen_total,
                "items": self._log.since(since, namespace, limit)}

    def metrics(self) -> str:
        """What ``/metrics`` returns."""
        return render_metrics(self._snapshotter)

    # -- recording events only while someone looks --------------------------------------

    def _recording(self) -> bool:
        return self._last_request >= 0

    def _touch(self) -> None:
        """A data request arrived (HTTP thread): record events from now on."""
        first = self._last_request < 0
        self._last_request = time.monotonic()
        if first or self.events_mode == "always":
            for watch in list(self._watches):
                try:
                    watch.subscribe()
                except Exception as error:  # a stopped registry: its summary says so
                    logger.debug("observer: cannot subscribe to %s: %r", watch.name, error)

    def _check_idle(self) -> None:
        """The server thread, between polls: with ``events="on_demand"``, stop
        recording once no client has asked anything for ``idle_s``."""
        if self.events_mode != "on_demand" or self._last_request < 0:
            return
        if time.monotonic() - self._last_request > self.idle_s:
            self._last_request = -1.0
            for watch in list(self._watches):
                watch.unsubscribe()

    def recording_events(self) -> bool:
        """True while the observer subscribes to its registries' events."""
        return any(w.subscription is not None for w in self._watches)

    # -- access -----------------------------------------------------------------------

    def _check_access(self, query: dict[str, list[str]],
                      headers: Any) -> Optional[tuple[int, str]]:
        if self.token is None:
            host = (headers.get("Host") or "").strip().lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            name = name.strip("[]")
            if host and not _is_loopback(name):
                return 403, "unexpected Host header for an observer bound to loopback"
            return None
        given = _one(query, "token", None)
        auth = headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        return 401, "a token is required: add ?token=... or 'Authorization: Bearer ...'"

    # -- stopping ---------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and cancel the event subscriptions; return once the
        observer's threads have ended, within about ``timeout`` seconds
        whatever clients do: open connections (a request half sent, an
        answer not read) are cut, not waited for. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            watches = list(self._watches)
        deadline = time.monotonic() + timeout
        if self._thread.is_alive():
            self._http.shutdown()  # the accept loop ends within its 0.1 s poll
        threads = self._http.close_connections()
        self._http.server_close()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        for watch in watches:
            watch.close()

    @property
    def running(self) -> bool:
        """True until :meth:`stop`."""
        return not self._stopped and self._thread.is_alive()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<Observer http://{self.host}:{self.port}/ ({state})>"


def serve(
    registry: Any = None,
    host: str = "127.0.0.1",
    port: int = 0,
    token: Optional[str] = None,
    *,
    max_events: int = DEFAULT_EVENTS,
    events: str = "on_demand",
) -> Observer:
    """Start an observer for ``registry`` (a :class:`~pykka_registry.Registry`,
    a list of them, or ``None`` to add them later with :meth:`Observer.add`)
    and return it once it accepts connections.

    ``host`` defaults to loopback. Any other host requires a token: pass one,
    or one is generated (``observer.token``; ``observer.url`` carries it), and
    a warning is logged. ``port=0`` picks a free port. ``max_events`` bounds
    the event ring.

    ``events="on_demand"`` (the default) records registry events from the
    first data request (page, ``/api/*``, ``/metrics``) until no request came
    for :attr:`Observer.idle_s` (60 s): an observer nobody looks at does not
    subscribe, so writes cost what they cost without it. ``events="always"``
    records from the start (the demo does, so that the tour's events are on
    the page when it is opened later).

    Raises:
        TypeError, ValueError: bad arguments (nothing is started).
        OSError: the address cannot be bound.
    """
    if not isinstance(host, str) or not host:
        raise TypeError(f"host must be a non-empty str, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535, got {port!r}")
    if token is not None and (not isinstance(token, str) or not token.strip()
                              or any(c.isspace() for c in token)):
        raise ValueError("token must be None or a non-empty str without whitespace")
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
        raise ValueError(f"max_events must be a positive int, got {max_events!r}")
    if events not in EVENT_MODES:
        raise ValueError(f"events must be one of {EVENT_MODES}, got {events!r}")
    registries: Iterable[Any]
    if registry is None:
        registries = ()
    elif isinstance(registry, (list, tuple)):
        registries = registry
    else:
        registries = (registry,)
    for item in registries:
        if not (hasattr(item, "subscribe") and hasattr(item, "backend")):
            raise TypeError(f"expected a Registry, got {type(item).__name__}")
    loopback = _is_loopback(host)
    if not loopback and token is None:
        token = secrets.token_urlsafe(24)
    observer = Observer(host, port, token, max_events, events)
    try:
        for item in registries:
            observer.add(item)
    except BaseException:
        observer.stop()
        raise
    observer._start()
    if not loopback:
        logger.warning("pykka-registry observer listens on http://%s:%s/ (not loopback): "
                       "every request needs its token", host, observer.port)
    else:
        logger.info("pykka-registry observer listens on http://%s:%s/", host, observer.port)
    return observer
