"""A fake Kaggle API on loopback, for driving the real kaggle client in tests.

It answers only the calls the kit makes, checks the credentials on each, and records every request
so that tests can assert on what arrived. It is as strict as Kaggle where a mistake would otherwise
pass unseen: a call naming another competition, or a kernel owner/slug that does not exist, gets 404,
and an upload whose bytes differ from the contentLength it declared gets 400. The real client
reaches it with KAGGLE_API_ENVIRONMENT=LOCALHOST (http://localhost, port 80); where port 80 cannot
be bound, the server takes a free port and the client is sent there through HTTP_PROXY.
"""
import base64
import io
import json
import re
import threading
import zipfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAKE_USER = "alice"
FAKE_KEY = "f4k3k3y0123456789abcdef0123456789"
FAKE_TOKEN = "KGAT_f4k3t0k3n0123456789abcdef"
STREAM_PATH = "/api/v1/kernels/logs/stream/"
COMPETITION = "digit-recognizer"
KERNEL = f"{FAKE_USER}/digit-recognizer-logistic-regression"
# Calls that name the competition (competitionName) or a kernel (the fields holding its owner and slug):
# a request aimed anywhere else is answered 404, as Kaggle answers it, so a test sees the mistake.
COMPETITION_METHODS = {"DownloadDataFiles", "StartSubmissionUpload", "CreateSubmission", "GetSubmissionLimits",
                       "ListSubmissions", "GetLeaderboard", "DownloadLeaderboard", "CreateCodeSubmission"}
KERNEL_METHODS = {"GetKernelSessionStatus": ("userName", "kernelSlug"),
                  "ListKernelSessionOutput": ("userName", "kernelSlug"),
                  "CreateCodeSubmission": ("kernelOwner", "kernelSlug")}


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes
    query: dict = field(default_factory=dict)

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class KernelVersion:
    """One pushed version: its status answers (one per status call, the last repeats), output and log."""
    kernel_statuses: list
    output_files: dict
    log_lines: list  # what the kernel printed, one entry per line; served as Kaggle's JSON event list
    failure_message: str = ""
    hold_until_streamed: bool = False  # stay at the first status until the log stream has been sent
    streamed: bool = False
    calls_since_streamed: int = 0

    @property
    def output_log(self) -> str:
        return kaggle_log(self.log_lines)


def midnight(days_from_today: int) -> datetime:
    """A midnight (UTC) some days from today, for the dates Kaggle sends: no test names a calendar date."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days_from_today)


def kaggle_log(lines: list[str]) -> str:
    """A log as Kaggle keeps it: a JSON list of {stream_name, time, data} events."""
    return json.dumps([{"stream_name": "stdout", "time": round(0.5 * i, 1), "data": line + "\n"}
                       for i, line in enumerate(lines)])


class FakeKaggle:
    """State of the fake site; tests set the fields before the client calls and read `requests` after."""

    def __init__(self):
        self.requests: list[Request] = []
        self.kernel_statuses = ["QUEUED", "RUNNING", "COMPLETE"]  # one per status call, the last repeats
        self.failure_message = ""
        self.output_files: dict[str, bytes] = {}
        self.output_log = ""
        self.blobs: dict[str, bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.declared_sizes: dict[str, int] = {}  # upload token -> the contentLength StartSubmissionUpload declared
        self.kernels: set[str] = {KERNEL}  # OWNER/SLUG that exist; SaveKernel adds the one it saves
        self.submissions: list[dict] = []  # newest first, as Kaggle lists them
        self.score_after = 2  # ListSubmissions calls before a new submission is scored
        self.public_score = "0.91234"
        self.limits = {"numToday": 1, "numTotal": 3, "numAllowedNow": 4}
        self.push_reply = None
        self.versions: dict[int, KernelVersion] = {}  # made by SaveKernel, or by a test for earlier pushes
        self.next_version = 1
        self.new_version_log: list[str] = ["training ...", "validation accuracy: 0.9231"]
        self.hold_until_streamed = False
        self.latest_session: int | None = None  # which version an unversioned status/output answers for
        self.stream_delay = 0.0  # seconds between log events on the live stream
        self.quota = {"quotaRefreshTime": f"{midnight(days_from_today=6):%Y-%m-%dT%H:%M:%SZ}",
                      "gpuQuota": {"timeUsed": "36000s", "totalTimeAllowed": "108000s"}}
        self.failing: set[str] = set()  # API methods that answer 500
        self.code_submission_refusal = ""  # a message makes CreateCodeSubmission answer 400 with it
        self.leaderboard: list[dict] = []  # [{"teamId", "teamName", "score", "members"}], best first
        self.denied: set[str] = set()  # API methods that answer 403, as before the rules are accepted
        # Misbehaviours (issue 20), each switched on per API method and independent of the others:
        self.held: dict[str, threading.Event] = {}  # method -> its answer waits, the work done, until the event is set
        self.unauthorized: set[str] = set()  # methods that answer 401 although the others accept the key
        self.echo_auth: set[str] = set()  # methods that answer 400 quoting the request's Authorization header
        self.key_at_end: set[str] = set()  # methods that answer 400 with a long message ending in the key
        self.messages: dict[str, str] = {}  # method -> a 400 answer with this message (escapes, line breaks)
        # Misbehaviours (issue 28): each does the method's work first, then answers badly, as a proxy in front
        # of Kaggle can after Kaggle has acted.
        self.truncated: set[str] = set()  # the JSON answer cut off halfway (as a dropped connection leaves it)
        self.bad_gateway: set[str] = set()  # 502 with an HTML page instead of the answer
        self.not_json: dict[str, bytes] = {}  # method -> a 200 answer of these bytes, as text/html
        self._lock = threading.RLock()  # API methods run under it and may read `requests`
        self._server = None
        self._thread = None
        self.env: dict[str, str] = {}

    # -- what tests look at

    def calls(self, method: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.rsplit("/", 1)[-1] == method]

    def api_calls(self) -> list[str]:
        """The API methods called, in order; the live log stream (a GET) shows as "logs/stream"."""
        with self._lock:
            return ["logs/stream" if r.path.startswith(STREAM_PATH) else r.path.rsplit("/", 1)[-1]
                    for r in self.requests if r.path.startswith("/api/v1/")]

    def set_competition_zip(self, files: dict[str, bytes]) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        self.blobs["digit-recognizer.zip"] = buffer.getvalue()

    def add_version(self, number: int, statuses: list, output_files: dict | None = None,
                    log_lines: list | None = None, failure_message: str = "") -> KernelVersion:
        self.versions[number] = KernelVersion(list(statuses), dict(output_files or {}), list(log_lines or []),
                                              failure_message)
        self.next_version = max(self.next_version, number + 1)
        return self.versions[number]

    def _version(self, body):
        """The version a request names (versionLabel vN), else the latest session; self before any push."""
        label = body.get("versionLabel")
        if label:
            return self.versions.get(int(label.removeprefix("v")))
        if self.versions:
            return self.versions[self.latest_session or max(self.versions)]
        return self  # no versions: the fields below stand for the kernel's one session

    # -- the API: one method per call, body in, (status, reply) out

    def GetKernelSessionStatus(self, body):
        version = self._version(body)
        if version is None:
            return 404, {"code": 404, "message": "Kernel version not found"}
        statuses = version.kernel_statuses
        held = getattr(version, "hold_until_streamed", False)
        if held and version.streamed:
            version.calls_since_streamed += 1
        if held and version.calls_since_streamed < 2:  # the client has had the stream for two checks
            status = statuses[0]
        else:
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        reply = {"status": status}
        if status == "ERROR" and version.failure_message:
            reply["failureMessage"] = version.failure_message
        return 200, reply

    def SaveKernel(self, body):
        owner, slug = body["slug"].split("/")
        self.kernels.add(body["slug"])
        number = self.next_version
        version = self.add_version(number, self.kernel_statuses, self.output_files, self.new_version_log,
                                   self.failure_message)
        version.hold_until_streamed = self.hold_until_streamed
        return 200, self.push_reply or {"ref": f"/code/{owner}/{slug}", "url": f"http://localhost/code/{owner}/{slug}",
                                        "versionNumber": number}

    def ListKernelSessionOutput(self, body):
        version = self._version(body)
        if version is None:
            return 404, {"code": 404, "message": "Kernel version not found"}
        files = []
        tag = body.get("versionLabel") or "latest"
        for i, (name, data) in enumerate(version.output_files.items()):
            key = name if re.fullmatch(r"[\w.-]+", name) else f"file-{i}"  # a name may hold anything: no URL
            self.blobs[f"{tag}/{key}"] = data
            files.append({"fileName": name, "url": f"http://localhost/blob/{tag}/{key}"})
        return 200, {"files": files, "log": version.output_log}

    def log_stream(self, owner: str, slug: str, query: dict) -> list[str] | None:
        """The events of GET /api/v1/kernels/logs/stream/OWNER/SLUG?versionLabel=vN (None: not found)."""
        version = self._version({"versionLabel": query.get("versionLabel", [""])[0]})
        if version is None or version is self:
            return None
        return json.loads(version.output_log)

    def GetAcceleratorQuotaStatistics(self, body):
        return 200, self.quota

    def CreateCodeSubmission(self, body):
        if self.code_submission_refusal:
            return 400, {"code": 400, "message": self.code_submission_refusal}
        version = self.versions.get(body.get("kernelVersion"))
        if version is None or body.get("fileName") not in version.output_files:
            return 404, {"code": 404, "message": "Kernel version or output file not found"}
        ref = 1000 + len(self.submissions) + 1
        self.submissions.insert(0, {
            "ref": ref, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "description": body.get("submissionDescription", ""), "fileName": body["fileName"],
            "status": "PENDING", "teamName": FAKE_USER, "_lists": 0})
        return 200, {"message": "Your submission was successfully saved", "ref": ref}

    def GetLeaderboard(self, body):
        size = body.get("pageSize") or 20
        return 200, {"submissions": [{"teamId": e["teamId"], "teamName": e["teamName"], "score": e["score"],
                                      "submissionDate": f"{midnight(-1):%Y-%m-%dT12:00:00.000Z}"} for e in self.leaderboard[:size]]}

    def DownloadLeaderboard(self, body):
        if not self.leaderboard:
            return 404, {"code": 404, "message": "Leaderboard not found"}
        rows = ["Rank,TeamId,TeamName,LastSubmissionDate,Score,SubmissionCount,TeamMemberUserNames"]
        rows += [f"{i},{e['teamId']},{e['teamName']},{midnight(-1):%Y-%m-%d} 12:00:00,{e['score']},3,{e.get('members', '')}"
                 for i, e in enumerate(self.leaderboard, start=1)]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("digit-recognizer-publicleaderboard.csv", "\n".join(rows) + "\n")
        self.blobs["leaderboard.zip"] = buffer.getvalue()
        return 302, "http://localhost/blob/leaderboard.zip"

    def DownloadDataFiles(self, body):
        return 302, "http://localhost/blob/digit-recognizer.zip"

    def StartSubmissionUpload(self, body):
        token = f"tok{len(self.uploads) + 1}"
        self.uploads[token] = b""
        self.declared_sizes[token] = int(body.get("contentLength", -1))
        return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}

    def CreateSubmission(self, body):
        ref = 1000 + len(self.submissions) + 1
        upload = self.uploads[body["blobFileTokens"]]
        self.submissions.insert(0, {
            "ref": ref, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "description": body.get("submissionDescription", ""), "fileName": "submission.csv",
            "totalBytes": len(upload), "status": "PENDING", "teamName": FAKE_USER, "_lists": 0})
        return 200, {"message": "Successfully submitted to Digit Recognizer", "ref": ref}

    def ListSubmissions(self, body):
        shown = []
        for item in self.submissions:
            item["_lists"] += 1
            if item["status"] == "PENDING" and item["_lists"] > self.score_after:
                item["status"], item["publicScore"] = "COMPLETE", self.public_score
            shown.append({k: v for k, v in item.items() if not k.startswith("_")})
        return 200, {"submissions": shown}

    def GetSubmissionLimits(self, body):
        return 200, self.limits

    def IntrospectToken(self, body):
        active = body.get("token") == FAKE_TOKEN
        return 200, {"active": active, "username": FAKE_USER if active else ""}

    # -- strictness: a request for another competition or kernel, or an upload of another size

    def misdirected(self, name: str, body: dict) -> tuple[int, dict] | None:
        """Kaggle's 404 for a call naming a competition or kernel that is not there; None when it is."""
        if name in COMPETITION_METHODS and body.get("competitionName") != COMPETITION:
            return 404, {"code": 404, "message": f"Competition {body.get('competitionName')!r} not found"}
        if name in KERNEL_METHODS:
            owner, slug = (body.get(key) for key in KERNEL_METHODS[name])
            if f"{owner}/{slug}" not in self.kernels:
                return 404, {"code": 404, "message": f"Kernel {owner}/{slug} not found"}
        return None

    def upload_problem(self, token: str, data: bytes) -> tuple[int, dict] | None:
        """404 for an unknown upload, 400 when the bytes PUT are not the size StartSubmissionUpload declared."""
        if token not in self.uploads:
            return 404, {"code": 404, "message": "no such upload"}
        if len(data) != self.declared_sizes.get(token):
            return 400, {"code": 400, "message": f"upload of {len(data)} bytes; {self.declared_sizes.get(token)} declared"}
        return None

    # -- serving

    def authorized(self, headers) -> bool:
        basic = base64.b64encode(f"{FAKE_USER}:{FAKE_KEY}".encode()).decode()
        return headers.get("Authorization") in (f"Basic {basic}", f"Bearer {FAKE_TOKEN}")

    def misbehaviour(self, name: str, headers) -> tuple[int, dict] | None:
        """The error answer a switched-on misbehaviour gives for this method, else None."""
        if name in self.unauthorized:
            return 401, {"code": 401, "message": "Unauthenticated"}
        if name in self.echo_auth:
            return 400, {"code": 400, "message": f"Bad request; received Authorization: {headers.get('Authorization')}"}
        if name in self.key_at_end:  # 184 characters, then the key: a cut at 200 would keep 16 of it
            return 400, {"code": 400, "message": "Invalid request: " + "x" * 162 + f" key={FAKE_KEY}"}
        if name in self.messages:
            return 400, {"code": 400, "message": self.messages[name]}
        return None

    def start(self) -> "FakeKaggle":
        handler = type("Handler", (_Handler,), {"fake": self})
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", 80), handler)
            self.env = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST"}
        except OSError:  # port 80 taken (another test run) or not allowed: go through a proxy setting
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            proxy = f"http://127.0.0.1:{self._server.server_address[1]}"
            self.env = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": proxy, "http_proxy": proxy}
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKaggle

    def log_message(self, *args):  # keep test output clean
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _record(self) -> Request:
        url = urlsplit(self.path)
        request = Request(self.command, url.path, dict(self.headers), self._body(), parse_qs(url.query))
        with self.fake._lock:
            self.fake.requests.append(request)
        return request

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, reply) -> None:
        self._send(status, json.dumps(reply).encode(), "application/json")

    def do_POST(self):
        request = self._record()
        if not request.path.startswith("/api/v1/"):
            return self._json(404, {"code": 404, "message": "not found"})
        if not self.fake.authorized(self.headers) and not request.path.endswith("/IntrospectToken"):
            return self._json(401, {"code": 401, "message": "Unauthenticated"})
        name = request.path.rsplit("/", 1)[-1]
        misbehaviour = self.fake.misbehaviour(name, self.headers)
        if misbehaviour:
            return self._json(*misbehaviour)
        if name in self.fake.failing:
            return self._json(500, {"code": 500, "message": "Internal error"})
        if name in self.fake.denied:
            return self._json(403, {"code": 403, "message": "Permission 'competitions.participate' was denied"})
        method = getattr(self.fake, name, None)
        if method is None:
            return self._json(404, {"code": 404, "message": "not implemented by the fake Kaggle"})
        body = request.json() if request.body else {}
        with self.fake._lock:
            status, reply = self.fake.misdirected(name, body) or method(body)
        if name in self.fake.held:  # the work is done; only the answer is late, until the test lets it go
            self.fake.held[name].wait(timeout=60)
        if status == 302:
            return self._send(302, b"", "text/plain", {"Location": reply})
        if name in self.fake.truncated:
            whole = json.dumps(reply).encode()
            return self._send(status, whole[:len(whole) // 2], "application/json")
        if name in self.fake.bad_gateway:
            return self._send(502, b"<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>",
                              "text/html")
        if name in self.fake.not_json:
            return self._send(200, self.fake.not_json[name], "text/html")
        self._json(status, reply)

    def do_PUT(self):
        request = self._record()
        token = request.path.removeprefix("/upload/")
        with self.fake._lock:
            problem = self.fake.upload_problem(token, request.body)
            if problem:
                return self._json(*problem)
            self.fake.uploads[token] = request.body
        self._json(200, {})

    def do_GET(self):
        request = self._record()
        if request.path.startswith(STREAM_PATH):
            return self._stream(request)
        data = self.fake.blobs.get(request.path.removeprefix("/blob/"))
        if data is None:
            return self._send(404, b"not found", "text/plain")
        self._send(200, data, "application/octet-stream")

    def _stream(self, request: Request) -> None:
        """Kaggle's live log: server-sent events, one per log event, then the END_OF_LOG sentinel."""
        if not self.fake.authorized(self.headers):
            return self._json(401, {"code": 401, "message": "Unauthenticated"})
        owner, slug = request.path.removeprefix(STREAM_PATH).split("/")[:2]
        with self.fake._lock:
            events = self.fake.log_stream(owner, slug, request.query) if f"{owner}/{slug}" in self.fake.kernels else None
        if events is None:
            return self._json(404, {"code": 404, "message": "Kernel version not found"})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in events:
            time.sleep(self.fake.stream_delay)
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: END_OF_LOG\n\n")
        self.wfile.flush()
        self.close_connection = True
        with self.fake._lock:
            version = self.fake._version({"versionLabel": request.query.get("versionLabel", [""])[0]})
            version.streamed = True
