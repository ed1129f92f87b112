"""Helpers shared by the end-to-end tests: the server process, zips, raw HTTP, logs.

Everything here talks to the real `shoal` binary over loopback; nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "functions"
EXAMPLES = REPO / "examples"
SHOAL_BIN = Path(os.environ.get("SHOAL_BIN", str(REPO / "target" / "release" / "shoal")))

ACCOUNT = "000000000000"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/shoal-e2e"
PY_RUNTIME = "python3.12"
NODE_RUNTIME = "nodejs20.x"
PROVIDED_RUNTIME = "provided.al2023"

HEALTH_TIMEOUT_S = 15.0
# Lambda's payload limit for synchronous invokes (request and response).
SIX_MB = 6 * 1024 * 1024


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def unique_name(prefix: str = "e2e") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --------------------------------------------------------------------------- zips

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def _zinfo(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so that external_attr carries the mode
    info.external_attr = (mode & 0xFFFF) << 16
    return info


def zip_dir(path: str | os.PathLike, extra: dict[str, bytes | str] | None = None) -> bytes:
    """Zip a folder in memory, deterministically, preserving the executable bit.

    `extra` adds files (name -> content) to the archive, e.g. to make a unique digest.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            st = p.stat()
            if p.is_dir():
                info = _zinfo(rel + "/", stat.S_IFDIR | (st.st_mode & 0o777))
                zf.writestr(info, b"")
            elif p.is_file():
                info = _zinfo(rel, stat.S_IFREG | (st.st_mode & 0o777))
                zf.writestr(info, p.read_bytes())
        for name, content in (extra or {}).items():
            zf.writestr(_zinfo(name, stat.S_IFREG | 0o644), content)
    return buf.getvalue()


def zip_files(files: dict[str, bytes | str | tuple[bytes | str, int]]) -> bytes:
    """Zip name -> content (or (content, mode)) in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in files.items():
            content, mode = value if isinstance(value, tuple) else (value, 0o644)
            zf.writestr(_zinfo(name, stat.S_IFREG | mode), content)
    return buf.getvalue()


def py_zip(source: str, module: str = "app") -> bytes:
    """A zip with one Python module (for tests that need code of their own)."""
    return zip_files({f"{module}.py": source})


# --------------------------------------------------------------------------- raw HTTP


class HttpResult:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpResult({self.status}, {self.headers}, {self.body[:500]!r})"


def http(endpoint: str, method: str, path: str, body: bytes | str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30) -> HttpResult:
    if isinstance(body, str):
        body = body.encode()
    req = urllib.request.Request(endpoint + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResult(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as e:
        return HttpResult(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


def health_ok(endpoint: str) -> bool:
    try:
        return http(endpoint, "GET", "/health", timeout=2).status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------- logs API


def get_logs(endpoint: str, name: str, after: int = 0, limit: int = 1000) -> dict:
    q = urllib.parse.urlencode({"after": after, "limit": limit})
    r = http(endpoint, "GET", f"/shoal/v1/functions/{urllib.parse.quote(name)}/logs?{q}")
    assert r.status == 200, r
    return r.json()


def all_log_events(endpoint: str, name: str) -> list[dict]:
    events: list[dict] = []
    after = 0
    for _ in range(100):
        page = get_logs(endpoint, name, after=after)
        events.extend(page["events"])
        nxt = page.get("nextAfter", after)
        if not page["events"] or nxt == after:
            break
        after = nxt
    return events


def wait_for_logs(endpoint: str, name: str, predicate, timeout: float = 5.0) -> list[dict]:
    """Poll the logs API until predicate(events) is true; return the events (or fail)."""
    deadline = time.monotonic() + timeout
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = all_log_events(endpoint, name)
        if predicate(events):
            return events
        time.sleep(0.1)
    raise AssertionError(
        f"log condition not met within {timeout}s; events:\n"
        + "\n".join(repr(e.get("message")) for e in events)
    )


def messages_for_request(events: list[dict], request_id: str) -> list[str]:
    """The messages between `START RequestId: id` and `REPORT RequestId: id`, both included."""
    out: list[str] = []
    inside = False
    for e in events:
        m = e["message"]
        if m.startswith(f"START RequestId: {request_id}"):
            inside = True
        if inside:
            out.append(m)
        if m.startswith(f"REPORT RequestId: {request_id}"):
            break
    return out


def request_id_from_tail(log_result_b64: str) -> str:
    text = base64.b64decode(log_result_b64).decode(errors="replace")
    for line in text.splitlines():
        if line.startswith("START RequestId: "):
            return line.split()[2]
    raise AssertionError(f"no START line in tail:\n{text}")


# --------------------------------------------------------------------------- server


class ShoalServer:
    """The real `shoal server` on a loopback port, with its own data dir."""

    def __init__(self, data_dir: Path, log_dir: Path, port: int | None = None,
                 keep_alive: str = "30s", binary: Path = SHOAL_BIN):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.keep_alive = keep_alive
        self.proc: subprocess.Popen | None = None
        self._starts = 0
        self._stderr_path: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stderr_text(self, tail: int = 8000) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")[-tail:]

    def start(self) -> None:
        if not self.binary.exists():
            raise RuntimeError(f"shoal binary not found at {self.binary} (set SHOAL_BIN)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        self._stderr_path = self.log_dir / f"server-{self.port}-{self._starts}.stderr"
        stdout_path = self.log_dir / f"server-{self.port}-{self._starts}.stdout"
        cmd = [str(self.binary), "server", "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", str(self.data_dir), "--keep-alive", self.keep_alive]
        with open(stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            # Own session, so that teardown can end the server's whole process group.
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=str(self.log_dir))
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"shoal server exited with {self.proc.returncode} before /health answered; "
                    f"command: {cmd}\nstderr:\n{self.stderr_text()}")
            if health_ok(self.endpoint):
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"shoal server did not answer GET /health with 200 within "
                           f"{HEALTH_TIMEOUT_S}s; stderr:\n{self.stderr_text()}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the process group if it is still there."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group(proc)
        return proc.returncode

    def kill(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        self._kill_group(proc)

    @staticmethod
    def _kill_group(proc: subprocess.Popen) -> None:
        # The server was started in its own session: its pid is the group id.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def restart(self) -> None:
        self.stop()
        self.start()


# --------------------------------------------------------------------------- invoke


def invoke(lam, name: str, payload=None, **kwargs) -> dict:
    """boto3 Invoke; adds `raw` (payload bytes), `json` (parsed, or None) and `log` (tail text)."""
    if payload is not None:
        kwargs["Payload"] = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    resp = lam.invoke(FunctionName=name, **kwargs)
    raw = resp["Payload"].read() if "Payload" in resp else b""
    resp["raw"] = raw
    try:
        resp["json"] = json.loads(raw) if raw else None
    except ValueError:
        resp["json"] = None
    resp["log"] = (base64.b64decode(resp["LogResult"]).decode(errors="replace")
                   if resp.get("LogResult") else "")
    return resp
