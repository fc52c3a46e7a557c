"""API server of the ELLA stand-in (test double): what ``singularity run IMAGE`` starts.

Boots like ELLA's entrypoint: waits the boot delay, refuses to start unless the
database is at this image's head, then serves a few JSON endpoints until SIGTERM
or SIGINT. Every request is appended to the access log, one flushed line each:

    2026-11-25T20:00:00.123Z 10.1.2.3 "GET /api/v1/config/ HTTP/1.1" 200 3ms
"""

from __future__ import annotations

import json
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from ella_standin import db
from ella_standin.encoding import to_json
from ella_standin.errors import ExitCode, StandinError
from ella_standin.image import STANDIN_DESCRIPTION, Image
from ella_standin.settings import Settings

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
MAX_BODY_BYTES = 1 << 20
EVALUATION_REVISION = "8d3e5b71c0a2"
"""The migration that added ``alleleassessment.evaluation``, which newer images fill in."""

STATS_TABLES = (
    "analysis",
    "alleleassessment",
    "interpretationlog",
    "uiexception",
    "broadcast",
    "usergroup",
    "filterconfig",
    "annotationshadow",
)


def run(image: Image, settings: Settings) -> int:
    """Boot, serve until a stop signal, and return the process exit code."""
    # Blocked before any thread starts, so every thread inherits the mask and the
    # main thread alone takes the signals, synchronously, with sigwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    with ServerLog(settings.api_log) as log:
        log.event(
            "INFO", f"{image.version} booting from {image.path} (fault: {image.fault or 'none'})"
        )
        if signal.sigtimedwait(STOP_SIGNALS, settings.boot_delay) is not None:
            log.event("INFO", "stopped while booting")
            return ExitCode.OK
        refusal = _refusal_to_start(image, settings)
        if refusal is not None:
            log.event("ERROR", refusal)
            return ExitCode.FAILURE
        return _serve(image, settings, log)


def _refusal_to_start(image: Image, settings: Settings) -> str | None:
    """Why the entrypoint won't start; like ELLA's, it wants the database at its head."""
    if image.fault == "crash-on-start":
        return "crashing on start (fault: crash-on-start)"
    try:
        with db.session(settings.require_db_url()) as conn:
            comparison = db.compare(conn, image.chain)
    except StandinError as error:
        return f"refusing to start: {error.message}"
    return None if comparison.matches else f"refusing to start: {comparison.describe()}"


def _serve(image: Image, settings: Settings, log: ServerLog) -> int:
    address = f"{settings.api_host}:{settings.api_port}"
    try:
        server = ApiServer((settings.api_host, settings.api_port), Api(image, settings), log)
    except OSError as error:
        log.event("ERROR", f"cannot listen on {address}: {error.strerror}")
        return ExitCode.FAILURE
    with server:
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        ).start()
        log.event("INFO", f"{image.version} listening on {address}")
        received = signal.sigwait(STOP_SIGNALS)
        log.event("INFO", f"received {signal.Signals(received).name}, shutting down")
        server.shutdown()
    log.event("INFO", "stopped")
    return ExitCode.OK


class ServerLog:
    """The access log file; events (boot, refusals, shutdown) also go to stderr."""

    def __init__(self, path: Path, stderr: TextIO = sys.stderr) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as error:
            raise StandinError(f"cannot open access log {path}: {error.strerror}") from error
        self._stderr = stderr
        self._lock = threading.Lock()

    def __enter__(self) -> ServerLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._file.close()

    def request(self, client: str, request_line: str, status: int, seconds: float) -> None:
        self._write(f'{_now()} {client} "{request_line}" {status} {round(seconds * 1000)}ms')

    def event(self, level: str, message: str) -> None:
        line = f"{_now()} {level} ella-standin {message}"
        self._write(line)
        print(line, file=self._stderr, flush=True)

    def _write(self, line: str) -> None:
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: object


class ClientError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Endpoint = Callable[[Any, dict[str, Any]], Response]
"""Takes a cursor in the request's transaction and the JSON body ({} for GET)."""


class Api:
    """Routes requests to endpoints; one database connection and transaction per request."""

    def __init__(self, image: Image, settings: Settings) -> None:
        self.image = image
        self._db_url = settings.require_db_url()
        self._routes: dict[str, dict[str, Endpoint]] = {
            "/api/v1/config/": {"GET": self._config},
            "/api/v1/broadcasts/": {"GET": self._broadcasts},
            "/api/v1/analyses/": {"GET": self._analyses, "POST": self._new_analysis},
            "/api/v1/alleleassessments/": {"POST": self._new_alleleassessment},
            "/api/v1/interpretationlogs/": {"POST": self._new_interpretationlog},
            "/api/v1/ui/exceptions/": {"POST": self._new_uiexception},
            "/api/v1/stats/": {"GET": self._stats},
        }

    def handle(self, method: str, target: str, body: bytes) -> Response:
        if self.image.fault == "never-healthy":
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable (fault: never-healthy)")
        path = urlsplit(target).path
        methods = self._routes.get(path if path.endswith("/") else path + "/")
        if methods is None:
            return _error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
        endpoint = methods.get(method)
        if endpoint is None:
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
        psycopg2 = db.driver()
        try:
            payload = _json_body(body) if method == "POST" else {}
            with db.connection(self._db_url) as conn, conn, conn.cursor() as cur:
                return endpoint(cur, payload)
        except ClientError as error:
            return _error(error.status, error.message)
        except psycopg2.errors.UniqueViolation as error:
            return _error(HTTPStatus.CONFLICT, db.one_line(error))
        except psycopg2.errors.ForeignKeyViolation as error:
            return _error(HTTPStatus.BAD_REQUEST, db.one_line(error))
        except (psycopg2.Error, StandinError) as error:
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"database error: {db.one_line(error)}")

    def _config(self, cur: Any, body: dict[str, Any]) -> Response:
        return Response(
            HTTPStatus.OK,
            {
                "app": {
                    "version": self.image.version,
                    "description": STANDIN_DESCRIPTION,
                    "fault": self.image.fault,
                    "image": self.image.path,
                },
                "database": {"revision": db.read_revision(cur), "head": self.image.head},
            },
        )

    def _broadcasts(self, cur: Any, body: dict[str, Any]) -> Response:
        cur.execute("SELECT id, date_created, message FROM broadcast WHERE active ORDER BY id")
        return Response(HTTPStatus.OK, _records(cur))

    def _analyses(self, cur: Any, body: dict[str, Any]) -> Response:
        cur.execute("SELECT id, name, genepanel, date_created FROM analysis ORDER BY id")
        return Response(HTTPStatus.OK, _records(cur))

    def _new_analysis(self, cur: Any, body: dict[str, Any]) -> Response:
        cur.execute(
            "INSERT INTO analysis (name, genepanel) VALUES (%s, %s) RETURNING id",
            (_field(body, "name", str), _field(body, "genepanel", str)),
        )
        return _created(cur)

    def _new_alleleassessment(self, cur: Any, body: dict[str, Any]) -> Response:
        analysis_id = _field(body, "analysis_id", int)
        allele = _field(body, "allele", str)
        classification = _field(body, "classification", str)
        if self.image.carries(EVALUATION_REVISION):
            cur.execute(
                "INSERT INTO alleleassessment (analysis_id, allele, classification, evaluation)"
                " VALUES (%s, %s, %s, %s::jsonb) RETURNING id",
                (analysis_id, allele, classification, to_json({"classification": classification})),
            )
        else:
            cur.execute(
                "INSERT INTO alleleassessment (analysis_id, allele, classification)"
                " VALUES (%s, %s, %s) RETURNING id",
                (analysis_id, allele, classification),
            )
        return _created(cur)

    def _new_interpretationlog(self, cur: Any, body: dict[str, Any]) -> Response:
        cur.execute(
            "INSERT INTO interpretationlog (analysis_id, user_id, message)"
            " VALUES (%s, %s, %s) RETURNING id",
            (
                _field(body, "analysis_id", int),
                _field(body, "user_id", int),
                _field(body, "message", str),
            ),
        )
        return _created(cur)

    def _new_uiexception(self, cur: Any, body: dict[str, Any]) -> Response:
        cur.execute(
            "INSERT INTO uiexception (user_id, message, location, stacktrace)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (
                _field(body, "user_id", int, required=False),
                _field(body, "message", str),
                _field(body, "location", str, required=False),
                _field(body, "stacktrace", str, required=False),
            ),
        )
        return _created(cur)

    def _stats(self, cur: Any, body: dict[str, Any]) -> Response:
        counts: dict[str, int] = {}
        for table in STATS_TABLES:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
            if cur.fetchone()[0]:
                # The name is one of STATS_TABLES, never input.
                cur.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cur.fetchone()[0]
        return Response(HTTPStatus.OK, counts)


def _error(status: HTTPStatus, message: str) -> Response:
    return Response(status, {"error": message})


def _created(cur: Any) -> Response:
    return Response(HTTPStatus.CREATED, {"id": cur.fetchone()[0]})


def _records(cur: Any) -> list[dict[str, Any]]:
    columns = [column.name for column in cur.description]
    return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"null")
    except ValueError as error:
        raise ClientError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise ClientError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    return payload


def _field(body: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    # bool is an int to Python, never to the API.
    if not isinstance(value, kind) or isinstance(value, bool) or value == "":
        article = "an integer" if kind is int else "a non-empty string"
        raise ClientError(HTTPStatus.BAD_REQUEST, f"'{name}' must be {article}")
    return value


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], api: Api, log: ServerLog) -> None:
        self.api = api
        self.log = log
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class RequestHandler(BaseHTTPRequestHandler):
    server: ApiServer
    server_version = "ella-standin"
    _started = 0.0

    def parse_request(self) -> bool:
        self._started = time.perf_counter()
        return super().parse_request()

    def do_GET(self) -> None:
        self._respond()

    def do_POST(self) -> None:
        self._respond()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def end_headers(self) -> None:
        self.send_header("X-Ella-Version", self.server.api.image.version)
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = code.value if isinstance(code, HTTPStatus) else code
        self.server.log.request(
            self.client_address[0],
            self.requestline,
            int(status) if str(status).isdigit() else 0,
            time.perf_counter() - self._started,
        )

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the access log line written by log_request says it all."""

    def _respond(self) -> None:
        try:
            response = self.server.api.handle(self.command, self.path, self._read_body())
        except ClientError as error:
            response = _error(error.status, error.message)
        except Exception as error:  # a stand-in bug must still be answered and logged
            self.server.log.event("ERROR", f"unhandled {type(error).__name__}: {error}")
            response = _error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        payload = to_json(response.body).encode("utf-8")
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            raise ClientError(HTTPStatus.BAD_REQUEST, f"bad Content-Length: {length}")
        return self.rfile.read(int(length))
