"""A fake Kaggle API on loopback, for driving the real kaggle client in tests.

It answers only the calls the kit makes, checks the credentials on each, and records every request
so that tests can assert on what arrived. The real client reaches it with
KAGGLE_API_ENVIRONMENT=LOCALHOST (http://localhost, port 80); where port 80 cannot be bound, the
server takes a free port and the client is sent there through HTTP_PROXY.
"""
import base64
import io
import json
import threading
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAKE_USER = "alice"
FAKE_KEY = "f4k3k3y0123456789abcdef0123456789"
FAKE_TOKEN = "KGAT_f4k3t0k3n0123456789abcdef"


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


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
        self.submissions: list[dict] = []  # newest first, as Kaggle lists them
        self.score_after = 2  # ListSubmissions calls before a new submission is scored
        self.public_score = "0.91234"
        self.limits = {"numToday": 1, "numTotal": 3, "numAllowedNow": 4}
        self.push_reply = None
        self.denied: set[str] = set()  # API methods that answer 403, as before the rules are accepted
        self._lock = threading.RLock()  # API methods run under it and may read `requests`
        self._server = None
        self._thread = None
        self.env: dict[str, str] = {}

    # -- what tests look at

    def calls(self, method: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.rsplit("/", 1)[-1] == method]

    def api_calls(self) -> list[str]:
        with self._lock:
            return [r.path.rsplit("/", 1)[-1] for r in self.requests if r.path.startswith("/api/v1/")]

    def set_competition_zip(self, files: dict[str, bytes]) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in files.items():
                archive.writestr(name, data)
        self.blobs["digit-recognizer.zip"] = buffer.getvalue()

    # -- the API: one method per call, body in, (status, reply) out

    def GetKernelSessionStatus(self, body):
        status = self.kernel_statuses.pop(0) if len(self.kernel_statuses) > 1 else self.kernel_statuses[0]
        reply = {"status": status}
        if status == "ERROR" and self.failure_message:
            reply["failureMessage"] = self.failure_message
        return 200, reply

    def SaveKernel(self, body):
        owner, slug = body["slug"].split("/")
        return 200, self.push_reply or {"ref": f"/code/{owner}/{slug}", "url": f"http://localhost/code/{owner}/{slug}",
                                        "versionNumber": len(self.calls("SaveKernel"))}

    def ListKernelSessionOutput(self, body):
        files = []
        for name, data in self.output_files.items():
            self.blobs[name] = data
            files.append({"fileName": name, "url": f"http://localhost/blob/{name}"})
        return 200, {"files": files, "log": self.output_log}

    def DownloadDataFiles(self, body):
        if body.get("competitionName") != "digit-recognizer":
            return 404, {"code": 404, "message": "Competition not found"}
        return 302, "http://localhost/blob/digit-recognizer.zip"

    def StartSubmissionUpload(self, body):
        token = f"tok{len(self.uploads) + 1}"
        self.uploads[token] = b""
        return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}

    def CreateSubmission(self, body):
        ref = 1000 + len(self.submissions) + 1
        upload = self.uploads[body["blobFileTokens"]]
        self.submissions.insert(0, {
            "ref": ref, "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "description": body.get("submissionDescription", ""), "fileName": "submission.csv",
            "totalBytes": len(upload), "status": "PENDING", "_lists": 0})
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

    # -- serving

    def authorized(self, headers) -> bool:
        basic = base64.b64encode(f"{FAKE_USER}:{FAKE_KEY}".encode()).decode()
        return headers.get("Authorization") in (f"Basic {basic}", f"Bearer {FAKE_TOKEN}")

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
        request = Request(self.command, urlsplit(self.path).path, dict(self.headers), self._body())
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
        if name in self.fake.denied:
            return self._json(403, {"code": 403, "message": "Permission 'competitions.participate' was denied"})
        method = getattr(self.fake, name, None)
        if method is None:
            return self._json(404, {"code": 404, "message": "not implemented by the fake Kaggle"})
        with self.fake._lock:
            status, reply = method(request.json() if request.body else {})
        if status == 302:
            return self._send(302, b"", "text/plain", {"Location": reply})
        self._json(status, reply)

    def do_PUT(self):
        request = self._record()
        token = request.path.removeprefix("/upload/")
        if token not in self.fake.uploads:
            return self._json(404, {"code": 404, "message": "no such upload"})
        self.fake.uploads[token] = request.body
        self._json(200, {})

    def do_GET(self):
        request = self._record()
        data = self.fake.blobs.get(request.path.removeprefix("/blob/"))
        if data is None:
            return self._send(404, b"not found", "text/plain")
        self._send(200, data, "application/octet-stream")
