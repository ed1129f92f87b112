"""Helpers shared by the end-to-end tests: the server process, zips, raw HTTP, logs.

Everything here talks to the real `shoal` binary over loopback; nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
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


class PortTaken(Exception):
    """The server could not listen: its port was taken since it was chosen."""


class ShoalServer:
    """The real `shoal server` on a loopback port, with its own data dir."""

    def __init__(self, data_dir: Path, log_dir: Path, port: int | None = None,
                 keep_alive: str = "30s", binary: Path = SHOAL_BIN,
                 extra_args=(), extra_env: dict[str, str] | None = None):
        self.extra_args = [str(a) for a in extra_args]
        self.extra_env = {k: str(v) for k, v in (extra_env or {}).items()}
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        # A port chosen here may be taken (by another test's outgoing connection) before the
        # server binds it: until the server has listened once, another one is tried then.
        self._port_may_change = port is None
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
        for _ in range(3):
            try:
                return self._start()
            except PortTaken:
                self.port = free_port()
        self._start()

    def _start(self) -> None:
        if not self.binary.exists():
            raise RuntimeError(f"shoal binary not found at {self.binary} (set SHOAL_BIN)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        self._stderr_path = self.log_dir / f"server-{self.port}-{self._starts}.stderr"
        stdout_path = self.log_dir / f"server-{self.port}-{self._starts}.stdout"
        cmd = [str(self.binary), "server", "--listen", f"127.0.0.1:{self.port}",
               "--data-dir", str(self.data_dir), "--keep-alive", self.keep_alive,
               *self.extra_args]
        env = dict(os.environ)
        env.update(self.extra_env)
        with open(stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=str(self.log_dir), env=env)
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self._port_may_change and "Address already in use" in self.stderr_text():
                    self.proc = None
                    raise PortTaken(self.port)
                raise RuntimeError(
                    f"shoal server exited with {self.proc.returncode} before /health answered; "
                    f"command: {cmd}\nextra env: {self.extra_env}\nstderr:\n{self.stderr_text()}")
            if health_ok(self.endpoint):
                self._port_may_change = False
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"shoal server did not answer GET /health with 200 within "
                           f"{HEALTH_TIMEOUT_S}s; command: {cmd}; stderr:\n{self.stderr_text()}")


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


# --------------------------------------------------------------------------- functions


class FunctionMaker:
    """Creates functions on one server and deletes them all at `delete_all()`: the body of
    the suite's function fixtures (deleting lets the server retire their environments,
    keeping the 2-core machine free)."""

    def __init__(self, lam, prefix: str = "e2e"):
        self.lam, self.prefix, self.created = lam, prefix, []

    def create(self, zip_bytes: bytes, runtime: str = PY_RUNTIME, handler: str = "app.handler",
               name: str | None = None, **extra) -> dict:
        """CreateFunction; its FunctionConfiguration."""
        name = name or unique_name(self.prefix)
        cfg = self.lam.create_function(FunctionName=name, Runtime=runtime, Handler=handler,
                                       Role=ROLE, Code={"ZipFile": zip_bytes}, **extra)
        self.created.append(name)
        return cfg

    def delete_all(self) -> None:
        for name in self.created:
            try:
                self.lam.delete_function(FunctionName=name)
            except Exception:
                pass


def started(server: "ShoalServer") -> "ShoalServer":
    """Starts `server`; a server that does not come up fails the test (with its log)."""
    import pytest
    try:
        server.start()
        error = None
    except RuntimeError as e:
        error = str(e)
    if error:  # outside the except block: no chained traceback in the report
        pytest.fail(error, pytrace=False)
    return server


def client_error(call, **kwargs):
    """The botocore ClientError that call(**kwargs) raises; fails if it succeeds (long
    string arguments are shortened in the message)."""
    from botocore.exceptions import ClientError
    try:
        result = call(**kwargs)
    except ClientError as e:
        return e
    result.pop("ResponseMetadata", None)
    shown = {k: (v[:40] + f"...({len(v)} chars)" if isinstance(v, str) and len(v) > 60 else v)
             for k, v in kwargs.items()}
    raise AssertionError(f"{call.__name__}({shown}) succeeded, expected an error: {result}")


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


# --------------------------------------------------------------------------- scaling, versions, metrics
# (Helpers for test_scaling*, test_versions*, test_metrics*.)

import re  # noqa: E402
import threading  # noqa: E402


class ConfiguredShoalServer(ShoalServer):
    """A ShoalServer started with extra `shoal server` flags and environment variables,
    e.g. extra_args=["--concurrency-limit", "4"], extra_env={"SHOAL_MEMORY_CAPACITY": "512"}
    (ShoalServer itself takes both; this name is kept for the tests that use it)."""


def settings_to_flags(settings: dict) -> list[str]:
    """{"concurrency_limit": 4, "memory_capacity": 512} -> ["--concurrency-limit", "4", ...]."""
    flags: list[str] = []
    for key, value in settings.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    return flags


# ----- Prometheus text format

_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(rf"^({_METRIC_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$")
_LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*(,|$)')
_UNESCAPE_RE = re.compile(r"\\(.)")


def _unescape_label(value: str) -> str:
    return _UNESCAPE_RE.sub(lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


class Metrics:
    """Parsed Prometheus text exposition (version 0.0.4).

    samples: [(name, {label: value}, float)]; types: {family: "counter"|"gauge"|...}.
    value(name, **labels) sums every series of `name` whose labels include `labels`
    (so extra labels a server adds do not matter); absent series count as `default`.
    """

    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] == "TYPE":
                    self.types[parts[2]] = parts[3].strip() if len(parts) > 3 else ""
                elif len(parts) >= 3 and parts[1] == "HELP":
                    self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            m = _SAMPLE_RE.match(line)
            if not m:
                raise AssertionError(f"/metrics line {lineno} is not a Prometheus sample: {line!r}")
            name, label_text, value_text = m.group(1), m.group(2), m.group(3)
            labels: dict[str, str] = {}
            if label_text:
                pos = 0
                while pos < len(label_text):
                    lm = _LABEL_RE.match(label_text, pos)
                    if not lm or lm.end() == pos:
                        raise AssertionError(
                            f"/metrics line {lineno} has malformed labels: {line!r}")
                    labels[lm.group(1)] = _unescape_label(lm.group(2))
                    pos = lm.end()
            try:
                value = float(value_text)
            except ValueError:
                raise AssertionError(f"/metrics line {lineno} has a bad value: {line!r}")
            self.samples.append((name, labels, value))

    def series(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [(lab, v) for n, lab, v in self.samples
                if n == name and all(lab.get(k) == str(want) for k, want in labels.items())]

    def has(self, name: str, **labels: str) -> bool:
        return bool(self.series(name, **labels))

    def value(self, name: str, default: float = 0.0, **labels: str) -> float:
        found = self.series(name, **labels)
        return sum(v for _, v in found) if found else default

    def __repr__(self) -> str:
        return f"Metrics({len(self.samples)} samples)"


def fetch_metrics(endpoint: str) -> Metrics:
    """GET /metrics, checking status and content type, parsed."""
    r = http(endpoint, "GET", "/metrics", timeout=10)
    assert r.status == 200, f"GET /metrics -> {r}"
    ctype = r.headers.get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, \
        f"GET /metrics content-type {ctype!r}, expected 'text/plain; version=0.0.4'"
    return Metrics(r.body.decode())


def metric(endpoint: str, name: str, **labels) -> float:
    """The value of one metric (summed over matching series; 0 when absent)."""
    return fetch_metrics(endpoint).value(name, **labels)


def wait_for(probe, until, timeout: float = 5.0, interval: float = 0.05, what: str = "condition"):
    """Call probe() until until(value) holds (then return value); fail after `timeout` s
    with the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s; last value: {value!r}")
        time.sleep(interval)


def wait_for_metric(endpoint: str, name: str, expected: float, timeout: float = 3.0,
                    **labels) -> float:
    """Poll /metrics until `name{labels}` equals `expected`."""
    return wait_for(lambda: metric(endpoint, name, **labels), lambda v: v == expected,
                    timeout=timeout, what=f"{name}{labels} == {expected}")


# ----- processes


def children_running(parent_pid: int, argument: bytes) -> set[int]:
    """Live child processes of `parent_pid` with `argument` among their command-line words
    (e.g. the server's sandbox inits, `__sandbox-init`)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent_pid and argument in argv:
            found.add(int(entry))
    return found


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_pids_dead(pids, timeout: float = 3.0) -> set[int]:
    """Wait until every pid is gone; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    left = set(pids)
    while True:
        left = {p for p in left if pid_alive(p)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def function_pids(name: str) -> set[int]:
    """Live processes whose environment has AWS_LAMBDA_FUNCTION_NAME=name exactly."""
    needle = f"AWS_LAMBDA_FUNCTION_NAME={name}".encode()
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0") and pid_alive(int(entry)):
            found.add(int(entry))
    return found


# ----- environments and their processes
#
# In an isolated environment (`--isolation namespaces`) every runtime has a PID namespace of
# its own and sees itself as a small pid (typically 2), so a pid a function reports names
# neither its environment nor a host process. The fixtures therefore report
#   env:  a token the runtime process makes once (uuid4 at import) - which environment ran
#         the invocation (compare these to tell environments apart);
#   proc: "<its pid namespace>/<its pid there>" (see process_identity) - how the host finds
#         that process while it lives (function_processes, host_pid).
# Both work the same without isolation (where proc is "<the host's pid namespace>/<host pid>").


def process_identity(pid: int) -> str | None:
    """How host process `pid` names itself: its pid namespace (readlink /proc/PID/ns/pid) and
    its pid in that namespace (the last NSpid entry), e.g. 'pid:[4026532180]/2'; None when
    it is gone. Unique among live processes (a namespace inode may be reused later)."""
    try:
        ns = os.readlink(f"/proc/{pid}/ns/pid")
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return f"{ns}/{line.split()[-1]}"
    except OSError:
        return None
    return None


def function_processes(name: str) -> dict[str, int]:
    """process_identity -> host pid, for every live process of function `name`."""
    found: dict[str, int] = {}
    for pid in function_pids(name):
        ident = process_identity(pid)
        if ident is not None:
            found[ident] = pid
    return found


def host_pid(name: str, proc: str) -> int:
    """The host pid of the live process of function `name` that reported itself as `proc`."""
    procs = function_processes(name)
    assert proc in procs, f"no live process of {name} is {proc!r}; its processes: {procs}"
    return procs[proc]


# ----- invoking


def invoke_http(endpoint: str, name: str, payload=None, qualifier: str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 15) -> HttpResult:
    """Raw Invoke (one fresh connection per call, so it is safe from many threads)."""
    path = f"/2015-03-31/functions/{urllib.parse.quote(name, safe='')}/invocations"
    if qualifier is not None:
        path += "?" + urllib.parse.urlencode({"Qualifier": qualifier})
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(
        payload if payload is not None else {})
    return http(endpoint, "POST", path, body=body, headers=headers, timeout=timeout)


def burst(n: int, call, timeout: float = 30) -> tuple[list, float]:
    """Run call(i) for i in range(n) on n threads released together.

    Returns (results, seconds from release to the last return); a call that raised has
    its exception as its result.
    """
    barrier = threading.Barrier(n + 1)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as e:  # noqa: BLE001 - reported to the test as a result
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.monotonic()
    for t in threads:
        t.join(max(0.0, timeout - (time.monotonic() - start)))
    elapsed = time.monotonic() - start
    hung = [i for i, t in enumerate(threads) if t.is_alive()]
    if hung:
        raise AssertionError(f"{len(hung)} of {n} calls still running after {timeout}s")
    return results, elapsed



def scaling_zip(marker: str | None = None) -> bytes:
    """The py-scaling fixture, with `marker` (returned by the handler) to tell code apart."""
    return zip_dir(FIXTURES / "py-scaling", extra={"marker.txt": marker} if marker else None)


def create_scaling_fn(lam, name: str | None = None, marker: str | None = None, **extra) -> str:
    """Create a py-scaling function on any server; returns its name."""
    name = name or unique_name()
    lam.create_function(FunctionName=name, Runtime=PY_RUNTIME, Handler="app.handler",
                        Role=ROLE, Code={"ZipFile": scaling_zip(marker)}, **extra)
    return name


# --------------------------------------------------------------------------- network test hosts


class NetnsHost:
    """A test host of the suite's own: a network namespace joined to the host's by a veth
    pair on a private /30, serving `files` ({"/path": bytes}) over HTTP at `url(path)`.
    Needs root and iproute2. Traffic to it never leaves this machine.

        with NetnsHost({"/blob": data}) as host:
            host.address, host.port, host.url("/blob")
    """

    def __init__(self, files: dict[str, bytes]):
        tag = uuid.uuid4().hex[:6]
        self.namespace = f"shoal-e2e-{tag}"
        self.host_if, self.peer_if = f"shoal{tag}h", f"shoal{tag}p"
        octet = int(tag[:2], 16)
        self.host_address, self.address = f"10.213.{octet}.1", f"10.213.{octet}.2"
        self.port = 8080
        self.files = files
        self.folder: Path | None = None
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}{path}"

    def _ip(self, *args: str, netns: bool = False) -> None:
        prefix = ["ip", "netns", "exec", self.namespace] if netns else []
        subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, timeout=10)

    def __enter__(self) -> "NetnsHost":
        import tempfile
        self.folder = Path(tempfile.mkdtemp(prefix="shoal-e2e-www-"))
        for path, data in self.files.items():
            (self.folder / path.lstrip("/")).write_bytes(data)
        try:
            subprocess.run(["ip", "netns", "add", self.namespace], check=True,
                           capture_output=True, timeout=10)
            self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
            self._ip("link", "set", self.peer_if, "netns", self.namespace)
            self._ip("addr", "add", f"{self.host_address}/30", "dev", self.host_if)
            self._ip("link", "set", self.host_if, "up")
            self._ip("addr", "add", f"{self.address}/30", "dev", self.peer_if, netns=True)
            self._ip("link", "set", self.peer_if, "up", netns=True)
            self._ip("link", "set", "lo", "up", netns=True)
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, "python3", "-m", "http.server",
                 "--bind", self.address, "--directory", str(self.folder), str(self.port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 10
            while True:
                try:
                    with socket.create_connection((self.address, self.port), timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(f"test host {self.namespace} did not start serving")
                    time.sleep(0.05)
        except Exception:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            ShoalServer._kill_group(self.proc)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)
        if self.folder is not None:
            import shutil
            shutil.rmtree(self.folder, ignore_errors=True)


def with_sdks(sdks: Path, data_dir: Path) -> Path:
    """Copies installed runtime SDKs (the `runtime_sdks` fixture) into a server's data
    folder, before it starts; returns the data folder."""
    shutil.copytree(sdks, data_dir / "runtimes" / "sdk", symlinks=True)
    return data_dir
