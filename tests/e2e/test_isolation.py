"""Escape tests for isolated execution environments (`shoal server --isolation namespaces`).

Each test deploys the hostile function tests/fixtures/functions/isolation (one probe per
invoke: it tries something and reports what the platform answered, as data) and asserts
that it stayed inside its environment: its own PID, mount, IPC, UTS and network namespaces;
a read-only root with the code at /var/task and a private /tmp of EphemeralStorage MB; the
user nobody; cgroup memory, CPU and pids limits; no_new_privs and a seccomp filter.

Every server here isolates its environments whatever SHOAL_ISOLATION says (the flag wins).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import support
from support import function_pids, invoke

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="isolated environments need root (Linux namespaces and cgroups); "
           "run the suite as root to test them")

PIDS_LIMIT = 64  # keeps the fork bomb quick
NOBODY = 65534
CODE = support.zip_dir(support.FIXTURES / "isolation")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def iso_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("isolation")


@pytest.fixture(scope="module")
def exposed():
    """A host folder the server exposes to every environment (read-only, same path)."""
    path = Path(tempfile.mkdtemp(prefix="shoal-e2e-exposed-", dir="/var/tmp"))
    (path / "readme.txt").write_text("exposed to functions\n")
    # Writable by anyone on the host: only the read-only mount keeps functions out.
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def exposed_in_tmp(iso_dir) -> Path:
    """Another exposed folder, under the host's /tmp (where pytest's folders are)."""
    path = iso_dir / "exposed"
    path.mkdir()
    (path / "readme.txt").write_text("exposed from /tmp\n")
    path.chmod(0o777)
    return path


@pytest.fixture(scope="module")
def iso(iso_dir, exposed, exposed_in_tmp):
    """The module's server: isolated environments, pids.max 64, two exposed folders."""
    srv = support.started(support.ShoalServer(
        data_dir=iso_dir / "data", log_dir=iso_dir / "logs", keep_alive="30s",
        extra_args=support.settings_to_flags({"isolation": "namespaces",
                                              "pids_limit": PIDS_LIMIT})
        + ["--sandbox-expose", str(exposed), "--sandbox-expose", str(exposed_in_tmp)]))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ilam(iso, client_for):
    return client_for(iso, max_pool_connections=16)


@pytest.fixture(scope="module")
def hostile(ilam):
    """hostile(**create_extra) -> name of a new hostile function on the isolated server.
    `code=` gives other zip bytes."""
    maker = support.FunctionMaker(ilam, "iso")

    def make(code: bytes = CODE, **extra) -> str:
        extra.setdefault("Timeout", 20)
        return maker.create(code, **extra)["FunctionName"]

    yield make
    maker.delete_all()


def probe(lam, fn: str, what: str, **event) -> dict:
    """Invoke one probe of function `fn`; the probe's report (failing the test on a
    function error)."""
    r = invoke(lam, fn, {"probe": what, **event})
    assert r["StatusCode"] == 200 and "FunctionError" not in r, \
        f"probe {what} of {fn}: {r.get('FunctionError')} {r['raw'][:2000]!r}"
    return r["json"]


def assert_server_fine(srv) -> None:
    assert srv.proc is not None and srv.proc.poll() is None, \
        f"the server died; stderr:\n{srv.stderr_text()}"
    assert support.health_ok(srv.endpoint), "the server stopped answering GET /health"
    # The host can still start processes.
    assert subprocess.run(["true"], timeout=10).returncode == 0


def denied(result: dict, *errors: str) -> bool:
    return "error" in result and result["error"] in errors


def cgroup_dirs(pid: int) -> dict[str, Path]:
    """controller -> the cgroup folder (on the host) of host process `pid` (v1 and v2)."""
    out: dict[str, Path] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in (controllers.split(",") if controllers else ["unified"]):
                if c in ("memory", "pids", "cpu", "unified"):
                    base = Path("/sys/fs/cgroup") / (c if c != "unified" else "")
                    if c == "cpu" and not (base / path.lstrip("/")).exists():
                        base = Path("/sys/fs/cgroup/cpu,cpuacct")
                    out[c] = base / path.lstrip("/")
    return out


def environment_cgroups(name: str) -> set[Path]:
    """The cgroup folders of the live processes of function `name` (those made for them)."""
    found: set[Path] = set()
    for pid in function_pids(name):
        try:
            found |= {d for d in cgroup_dirs(pid).values() if "shoal" in d.parts}
        except OSError:
            pass
    return found


# --------------------------------------------------------------------------- who and where


def test_identity_user_hostname_and_privileges(ilam, hostile):
    me = probe(ilam, hostile(), "identity")
    assert (me["uid"], me["euid"], me["gid"], me["egid"]) == (NOBODY,) * 4, me
    assert me["hostname"] == "sandbox" and me["nodename"] == "sandbox", me
    assert me["status"]["NoNewPrivs"] == "1", me["status"]
    assert me["status"]["Seccomp"] == "2", me["status"]  # filter mode
    assert int(me["status"]["CapEff"], 16) == 0 and int(me["status"]["CapPrm"], 16) == 0, \
        me["status"]
    assert me["task_root"] == "/var/task" and me["cwd"] == "/var/task", me
    assert me["runtime_api"] == "127.0.0.1:9001", me
    # A minimal /dev and a root made of the system folders and the environment's own.
    devices = {"null", "zero", "full", "random", "urandom"}
    assert devices <= set(me["dev"]), me["dev"]
    assert set(me["dev"]) - devices <= {"fd", "stdin", "stdout", "stderr"}, me["dev"]
    assert "sys" not in me["root"] and "home" not in me["root"] and "work" not in me["root"], \
        me["root"]
    # /tmp is the function's EphemeralStorage (512 MB by default), free at the start.
    bsize, _, _, _, available = me["tmp_stat"][:5]
    assert 512 << 20 <= bsize * available <= 1.05 * (512 << 20), me["tmp_stat"]
    assert "lost+found" not in me["tmp"], me["tmp"]
    # No capability can come back: the bounding set is empty too.
    assert int(me["status"]["CapBnd"], 16) == 0, me["status"]


def test_proc_shows_only_the_environment(iso, ilam, hostile):
    me = probe(ilam, hostile(), "identity")
    procs = {int(pid): r.get("ok", "") for pid, r in me["procs"].items()}
    # The sandbox init (pid 1) and the runtime (the function itself), nothing else.
    assert me["pid"] in procs and len(procs) <= 3, procs
    for pid, cmdline in procs.items():
        argv = cmdline.split("\0")
        assert pid == me["pid"] or "__sandbox-init" in argv, \
            f"the function sees a process that is not its own: {pid} {argv}"
        assert "server" not in argv and str(iso.data_dir) not in cmdline, argv
    assert iso.proc.pid not in procs or "__sandbox-init" in procs[iso.proc.pid]

    # pid 1 (root-owned) gives nothing away.
    seen = probe(ilam, hostile(), "read",
                 paths=["/proc/1/environ", "/proc/1/root/", "/proc/1/cwd/", "/proc/1/fd",
                        "/proc/1/mem"])
    for path, result in seen.items():
        assert denied(result, "EACCES", "EPERM"), f"{path}: {result}"


def test_host_files_and_the_server_data_are_out_of_sight(iso, ilam, hostile):
    data = iso.data_dir
    assert (data / "code").is_dir()  # the host's side of it, for the record
    seen = probe(ilam, hostile(), "read", paths=[
        str(data), str(data / "code"), str(data / "envs"), str(data / "shoal.db"),
        str(support.REPO / "Cargo.toml"), str(support.SHOAL_BIN), "/root/.bash_history",
        "/sys/fs/cgroup", "/home", "/etc/shadow", "/root"])
    for path in (data, data / "code", data / "envs", data / "shoal.db"):
        assert denied(seen[str(path)], "ENOENT", "EACCES"), f"{path}: {seen[str(path)]}"
    for path in (support.REPO / "Cargo.toml", support.SHOAL_BIN, "/root/.bash_history",
                 "/sys/fs/cgroup", "/home"):
        assert denied(seen[str(path)], "ENOENT", "EACCES"), f"{path}: {seen[str(path)]}"
    assert denied(seen["/etc/shadow"], "EACCES", "ENOENT"), seen["/etc/shadow"]
    # Of /root, only the interpreter's install prefix (e.g. /root/.pyenv/versions/X).
    assert set(seen["/root"].get("ok", [])) <= {".pyenv", ".nvm", ".local"}, seen["/root"]


def test_another_functions_code_is_out_of_sight(iso, ilam, hostile):
    secret = f"secret-{uuid.uuid4().hex}.txt"
    other_code = support.zip_dir(support.FIXTURES / "isolation", extra={secret: "theirs"})
    other = hostile(code=other_code)
    probe(ilam, other, "noop")  # deployed and running
    host_copy = iso.data_dir / "code" / hashlib.sha256(other_code).hexdigest()
    if not (host_copy / secret).is_file():  # the layout may change; find it
        found = list(iso.data_dir.rglob(secret))
        assert found, f"{secret} not found under {iso.data_dir}"
        host_copy = found[0].parent
    me = hostile()
    seen = probe(ilam, me, "read", paths=[str(host_copy / secret), str(host_copy),
                                          "/var/task", f"/var/task/{secret}"])
    assert denied(seen[str(host_copy / secret)], "ENOENT", "EACCES"), seen
    assert denied(seen[str(host_copy)], "ENOENT", "EACCES"), seen
    assert secret not in seen["/var/task"]["ok"], seen["/var/task"]
    assert denied(seen[f"/var/task/{secret}"], "ENOENT"), seen
    # The other function does see its own file (the probe works).
    theirs = probe(ilam, other, "read", paths=[f"/var/task/{secret}"])
    assert theirs[f"/var/task/{secret}"] == {"ok": "theirs"}, theirs


def test_tmp_is_private_to_each_environment(ilam, hostile):
    marker = f"marker-{uuid.uuid4().hex}"
    a, b = hostile(), hostile()
    wrote = probe(ilam, a, "mark_tmp", name=marker, content="env A")
    assert probe(ilam, a, "find_tmp", name=marker)["found"] == [f"/tmp/{marker}"]  # warm
    (a_pid,) = function_pids(a)
    # The host finds it in A's own root, not in its /tmp.
    assert Path(f"/proc/{a_pid}/root/tmp/{marker}").read_text() == "env A"
    assert not Path(f"/tmp/{marker}").exists(), "a function's /tmp file landed in the host's"

    # Another function does not see it...
    other = probe(ilam, b, "find_tmp", name=marker)
    assert other["found"] == [] and marker not in other["listing"], other
    # ...nor another environment of the same function (one made while A's is busy).
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(probe, ilam, a, "sleep", seconds=1.5)
        time.sleep(0.4)
        second = probe(ilam, a, "find_tmp", name=marker)
        slept = busy.result(timeout=20)
    assert slept["env_id"] == wrote["env_id"]
    assert second["env_id"] != wrote["env_id"], "expected a second environment"
    assert second["found"] == [] and marker not in second["listing"], second


def test_environment_variables_of_one_function_are_invisible_to_another(ilam, hostile):
    secret = uuid.uuid4().hex
    a = hostile(Environment={"Variables": {"A_SECRET": secret}})
    b = hostile()
    assert probe(ilam, a, "noop")  # A's environment is alive while B looks
    assert function_pids(a)
    seen = probe(ilam, b, "environs")
    everything = repr(seen)
    assert secret not in everything, f"B saw A's variable: {seen}"
    assert a not in everything, f"B saw a process of A: {seen}"
    own = seen["procs"][str(seen["self"])]["environ"]["ok"]  # the scan works: B's own
    assert f"AWS_LAMBDA_FUNCTION_NAME={b}" in own.split("\0")


# --------------------------------------------------------------------------- read-only root


def test_code_and_root_are_read_only(ilam, hostile, exposed):
    name = hostile()
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("python3") or "")))
    paths = ["/var/task/x", "/x", "/etc/x", "/usr/x", "/var/runtime/x", "/root/x",
             "/var/x", "/dev/x", str(exposed / "x"), "/proc/sys/kernel/hostname"]
    if prefix.startswith("/root/"):
        paths.append(f"{prefix}/x")
    wrote = probe(ilam, name, "write", paths=paths + ["/tmp/writable"])
    assert wrote["/tmp/writable"] == {"ok": True}, wrote  # the probe can write
    for path in paths:
        assert denied(wrote[path], "EROFS", "EACCES", "EPERM"), f"{path}: {wrote[path]}"
    for path in ("/var/task/x", "/x", "/etc/x", "/usr/x", str(exposed / "x")):
        assert wrote[path]["error"] == "EROFS", f"{path}: {wrote[path]}"
    assert not (exposed / "x").exists()
    # The exposed folder is readable, at the same path.
    seen = probe(ilam, name, "read", paths=[str(exposed / "readme.txt")])
    assert seen[str(exposed / "readme.txt")] == {"ok": "exposed to functions\n"}


def test_exposed_folder_under_tmp_is_visible_read_only(ilam, hostile, exposed_in_tmp):
    # `--sandbox-expose` of a folder under the host's /tmp: the environment's private /tmp
    # must not hide it (or the server should refuse the flag, not drop it silently).
    name = hostile()
    readme = str(exposed_in_tmp / "readme.txt")
    seen = probe(ilam, name, "read", paths=[readme])
    assert seen[readme] == {"ok": "exposed from /tmp\n"}, \
        f"{readme} exposed with --sandbox-expose, inside the environment: {seen[readme]}"
    wrote = probe(ilam, name, "write", paths=[str(exposed_in_tmp / "x")])
    assert denied(wrote[str(exposed_in_tmp / "x")], "EROFS"), wrote


# --------------------------------------------------------------------------- resources


def test_memory_past_memory_size_is_an_out_of_memory_error(iso, ilam, hostile):
    name = hostile(MemorySize=128)
    before = probe(ilam, name, "noop")
    t0 = time.monotonic()
    r = invoke(ilam, name, {"probe": "allocate", "mb": 300})
    took = time.monotonic() - t0
    assert r["StatusCode"] == 200, r
    assert r.get("FunctionError") == "Unhandled", r["raw"]
    assert r["json"]["errorType"] == "Runtime.OutOfMemory", r["json"]
    assert took < 15, f"the out-of-memory invoke took {took:.1f}s"
    assert_server_fine(iso)
    after = probe(ilam, name, "noop")  # a new environment
    assert after["env_id"] != before["env_id"]
    assert len(function_pids(name)) == 1


def test_fork_bomb_is_contained(iso, ilam, hostile):
    name = hostile()
    probe(ilam, name, "noop")
    peak, stop = [0], threading.Event()

    def watch():  # from the host: the function's processes never pass the pids limit
        while not stop.is_set():
            peak[0] = max(peak[0], len(function_pids(name)))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        t0 = time.monotonic()
        r = invoke(ilam, name, {"probe": "fork_bomb", "seconds": 3})
        took = time.monotonic() - t0
    finally:
        stop.set()
        watcher.join(5)
    assert r["StatusCode"] == 200, r
    assert took < 15, f"the fork bomb invoke took {took:.1f}s"
    if "FunctionError" not in r:
        report = r["json"]
        assert report["errors"].get("EAGAIN", 0) > 0, report
        assert report["forked"] < PIDS_LIMIT, report
    assert 0 < peak[0] <= PIDS_LIMIT, f"{peak[0]} processes of the function at once"
    assert_server_fine(iso)
    assert probe(ilam, name, "noop")  # the next invoke works


def _tmp_images_bytes(srv) -> int:
    """Disk space the environments' /tmp images of server `srv` take on the host."""
    return sum(p.stat().st_blocks * 512 for p in (srv.data_dir / "envs").rglob("tmp.img"))


@pytest.fixture(scope="module")
def tmp_fs(ilam, hostile) -> str:
    """The filesystem of environments' /tmp on the module's server: ext4 (disk-backed, where
    the host has loop devices) or tmpfs."""
    mounts = probe(ilam, hostile(), "identity")["mounts"]
    return next(fstype for _, target, fstype, _ in mounts if target == "/tmp")


def test_filling_tmp_stops_at_its_size_inside(iso, ilam, hostile, tmp_fs):
    # On disk /tmp is apart from memory (as on Lambda): a 128 MB function fills 600 MB. A
    # tmpfs /tmp (hosts without loop devices) counts against memory, hence 1024 MB there.
    on_disk = tmp_fs == "ext4"
    name = hostile(MemorySize=128 if on_disk else 1024, EphemeralStorage={"Size": 600})
    env = probe(ilam, name, "noop")["env_id"]
    images_before = _tmp_images_bytes(iso)
    host_before = shutil.disk_usage(iso.data_dir).free
    filled = probe(ilam, name, "fill_tmp")
    host_after = shutil.disk_usage(iso.data_dir).free
    images_after = _tmp_images_bytes(iso)
    try:
        assert filled["error"] == "ENOSPC", filled
        assert 600 <= filled["written_mb"] <= 630, filled
        assert filled["env_id"] == env, "the environment did not survive filling /tmp"
        # What it wrote is in its own image (or memory) and nowhere else on the host.
        grown = images_after - images_before  # (some writes may still be on their way)
        if on_disk:
            assert grown >= (filled["written_mb"] - 64) << 20, f"the images grew by {grown >> 20} MB"
        # The other test worker writes to the same disk meanwhile (event archives, queues,
        # logs: tens of MB at times), hence the margin; a /tmp written to the host instead
        # of the image would cost it another 600 MB.
        assert host_before - host_after <= grown + (160 << 20), \
            f"the host lost {(host_before - host_after) >> 20} MB, the images took {grown >> 20}"
    finally:
        removed = probe(ilam, name, "remove_fill")
    assert removed["removed"], removed
    # Deleting frees the host's disk too (the filesystem discards into the sparse image).
    support.wait_for(lambda: _tmp_images_bytes(iso), lambda size: size < images_before + (64 << 20),
                     timeout=10, what="the /tmp image to shrink after the file was removed")
    assert probe(ilam, name, "noop")["env_id"] == env


def test_tmp_is_on_disk_where_the_host_allows_it(tmp_fs):
    if not (os.path.exists("/dev/loop-control") and shutil.which("mkfs.ext4")):
        pytest.skip("this host has no loop devices or no mkfs.ext4: /tmp is a tmpfs")
    if os.environ.get("SHOAL_TMP_STORAGE") == "memory":
        pytest.skip("SHOAL_TMP_STORAGE=memory")
    assert tmp_fs == "ext4"


def test_cpu_is_limited_in_proportion_to_memory(ilam, hostile):
    small, full = hostile(MemorySize=128), hostile(MemorySize=1769)
    slow = probe(ilam, small, "burn", seconds=3, workers=2)
    fast = probe(ilam, full, "burn", seconds=3, workers=2)
    print(f"\nCPU time / wall time of 2 busy processes: 128 MB {slow['ratio']:.3f} "
          f"(quota {128 / 1769:.3f}), 1769 MB {fast['ratio']:.3f} (quota 1.0)")
    assert 0.03 <= slow["ratio"] <= 0.2, slow
    assert fast["ratio"] > 0.6, fast


def test_cgroup_limits_seen_from_the_host(ilam, hostile):
    name = hostile(MemorySize=256)
    probe(ilam, name, "noop")
    (pid,) = function_pids(name)
    dirs = cgroup_dirs(pid)

    def read(*candidates: Path) -> str:
        for path in candidates:
            if path.exists():
                return path.read_text().strip()
        raise AssertionError(f"none of {candidates} exists (cgroups of {pid}: {dirs})")

    v2 = "memory" not in dirs
    mem = dirs["unified"] if v2 else dirs["memory"]
    pids = dirs["unified"] if v2 else dirs["pids"]
    cpu = dirs["unified"] if v2 else dirs["cpu"]
    assert "shoal" in mem.parts, f"the environment is not in a cgroup of its own: {dirs}"
    assert int(read(mem / "memory.max", mem / "memory.limit_in_bytes")) == 256 << 20
    assert int(read(pids / "pids.max")) == PIDS_LIMIT
    if v2:
        quota, period = read(cpu / "cpu.max").split()
    else:
        quota, period = read(cpu / "cpu.cfs_quota_us"), read(cpu / "cpu.cfs_period_us")
    assert abs(int(quota) / int(period) - 256 / 1769) < 0.01, (quota, period)


# --------------------------------------------------------------------------- system calls


@pytest.mark.skipif(platform.machine() != "x86_64",
                    reason="the probe calls system calls by their x86_64 numbers")
def test_forbidden_system_calls_fail_with_eperm(ilam, hostile):
    calls = probe(ilam, hostile(), "syscalls")
    wrong = {name: r for name, r in calls.items()
             if (r["ret"], r["errno"]) != ((-1, "ENOSYS") if name == "clone3" else (-1, "EPERM"))}
    assert not wrong, f"system calls that did not fail as they should: {wrong}"
    # The ones that matter most, by name.
    for name in ("unshare(CLONE_NEWUSER)", "unshare(CLONE_NEWPID)", "mount(tmpfs)",
                 "ptrace(PTRACE_TRACEME)", "ptrace(PTRACE_ATTACH, 1)", "setns(own net)"):
        assert calls[name] == {"ret": -1, "errno": "EPERM"}, (name, calls[name])


def test_only_the_socket_families_a_runtime_needs(ilam, hostile):
    got = probe(ilam, hostile(), "sockets")
    for name in ("AF_UNIX", "AF_INET", "AF_INET6", "NETLINK_ROUTE",
                 "getaddrinfo(localhost, AI_ADDRCONFIG)"):
        assert got[name] == "ok", (name, got)
    for name in ("NETLINK_SOCK_DIAG", "NETLINK_AUDIT", "NETLINK_KOBJECT_UEVENT", "NETLINK_GENERIC",
                 "AF_VSOCK", "AF_ALG", "AF_PACKET", "AF_KEY", "AF_APPLETALK", "AF_UNSPEC"):
        assert got[name] == "EAFNOSUPPORT", (name, got)


# --------------------------------------------------------------------------- network


def _host_address() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            address = s.getsockname()[0]
        return None if address.startswith("127.") else address
    except OSError:
        return None


def _listening_on_host(local: str) -> bool:
    """Whether a socket of the host's network namespace listens on `local` (as written in
    /proc/net/tcp, e.g. "0100007F:2329" for 127.0.0.1:9001)."""
    for table in ("/proc/net/tcp",):
        try:
            with open(table) as f:
                for line in list(f)[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and fields[1] == local:
                        return True
        except OSError:
            pass
    return False


def test_network_is_loopback_only_and_the_host_is_unreachable(iso, ilam, hostile):
    name = hostile()
    # Host listeners: loopback, every address, and an abstract unix socket.
    loop = socket.socket()
    loop.bind(("127.0.0.1", 0))
    loop.listen()
    anywhere = socket.socket()
    anywhere.bind(("0.0.0.0", 0))
    anywhere.listen()
    abstract_name = f"shoal-e2e-{uuid.uuid4().hex}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + abstract_name)
    abstract.listen()
    try:
        lport, aport = loop.getsockname()[1], anywhere.getsockname()[1]
        host_ip = _host_address()
        targets = {
            f"127.0.0.1:{iso.port}": ("ECONNREFUSED",),  # the Shoal API, from inside
            f"127.0.0.1:{lport}": ("ECONNREFUSED",),
            f"127.0.0.1:{aport}": ("ECONNREFUSED",),
            f"[::1]:{iso.port}": ("ECONNREFUSED", "EADDRNOTAVAIL", "ENETUNREACH"),
            f"@{abstract_name}": ("ECONNREFUSED",),
            "8.8.8.8:53": ("ENETUNREACH", "EHOSTUNREACH", "TimeoutError: timed out"),
        }
        if host_ip:
            for port in (iso.port, aport):
                targets[f"{host_ip}:{port}"] = ("ENETUNREACH", "EHOSTUNREACH",
                                                "TimeoutError: timed out")
        got = probe(ilam, name, "connect",
                    targets=[*targets, "127.0.0.1:9001", "127.0.0.1:9002"])
        for target, allowed in targets.items():
            assert got[target].get("error") in allowed, f"{target}: {got[target]}"
        assert got["127.0.0.1:9001"] == {"ok": True}, got  # its own Runtime API
        assert got["127.0.0.1:9002"] == {"ok": True}, got  # its own platform API endpoint
        # The listeners work from the host (so the refusals above are the sandbox's doing).
        for addr in (("127.0.0.1", lport), ("127.0.0.1", aport)):
            socket.create_connection(addr, timeout=2).close()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect("\0" + abstract_name)
    finally:
        for s in (loop, anywhere, abstract):
            s.close()

    me = probe(ilam, name, "identity")
    assert me["interfaces"] == ["lo"], me["interfaces"]
    # The only listening sockets it sees are its own Runtime API (127.0.0.1:9001) and
    # platform API endpoint (127.0.0.1:9002)...
    assert sorted(me["listening"]) == ["0100007F:2329", "0100007F:232A"], me["listening"]
    # ...which are not in the host's network namespace (where nothing else should be on
    # 127.0.0.1:9001 or 9002 either).
    for address in ("0100007F:2329", "0100007F:232A"):
        assert not _listening_on_host(address), \
            f"something listens on {address} in the host's network namespace"


def test_another_environments_invocation_cannot_be_answered(iso, ilam, hostile):
    victim, attacker = hostile(), hostile()
    probe(ilam, attacker, "noop")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(invoke, ilam, victim, {"probe": "sleep", "seconds": 2})
        events = support.wait_for_logs(
            iso.endpoint, victim,
            lambda ev: any(e["message"].startswith("START RequestId: ") for e in ev),
            timeout=10)
        rid = next(e["message"].split()[2] for e in events
                   if e["message"].startswith("START RequestId: "))
        # The attacker answers the victim's invocation through the Runtime API it can reach.
        tried = probe(ilam, attacker, "hijack", request_id=rid)
        result = pending.result(timeout=20)
    assert tried["api"] == "127.0.0.1:9001", tried
    assert "error" in tried or 400 <= tried["status"] < 500, \
        f"the attacker's Runtime API accepted a response for another invocation: {tried}"
    assert "FunctionError" not in result, result["raw"]
    assert result["json"]["slept"] == 2, f"the victim's invocation was answered: {result['raw']}"
    assert probe(ilam, attacker, "noop")  # and the attacker's environment still works


# --------------------------------------------------------------------------- teardown


def test_environment_teardown_removes_its_cgroups(iso, ilam, hostile):
    ended = []
    # Deleted function.
    gone = hostile()
    probe(ilam, gone, "noop")
    groups = environment_cgroups(gone)
    assert groups and all(g.is_dir() for g in groups), groups
    pids = function_pids(gone)
    ilam.delete_function(FunctionName=gone)
    assert not support.wait_pids_dead(pids)
    ended.append(("delete", groups))
    # Killed for its memory.
    oom = hostile(MemorySize=128)
    probe(ilam, oom, "noop")
    groups = environment_cgroups(oom)
    pids = function_pids(oom)
    assert invoke(ilam, oom, {"probe": "allocate", "mb": 300})["json"]["errorType"] == \
        "Runtime.OutOfMemory"
    assert not support.wait_pids_dead(pids)
    ended.append(("out of memory", groups))
    # Timed out.
    slow = hostile(Timeout=1)
    probe(ilam, slow, "noop")
    groups = environment_cgroups(slow)
    pids = function_pids(slow)
    timed_out = invoke(ilam, slow, {"probe": "sleep", "seconds": 3})
    assert timed_out["json"]["errorType"] == "Sandbox.Timedout", timed_out["json"]
    assert not support.wait_pids_dead(pids)
    ended.append(("timeout", groups))

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(g.exists() for _, gs in ended for g in gs):
        time.sleep(0.1)
    left = {why: sorted(str(g) for g in gs if g.exists()) for why, gs in ended}
    assert not any(left.values()), f"cgroups left behind by ended environments: {left}"


def test_another_server_leaves_these_environments_alone_and_cleans_up(
        ilam, hostile, server_with, client_for):
    # An environment of the module's server, warm while a second server comes and goes.
    ours = hostile()
    before = probe(ilam, ours, "noop")
    our_pids = function_pids(ours)

    srv = server_with(isolation="namespaces")
    lam = client_for(srv)
    names = [support.unique_name("down") for _ in range(2)]
    groups: set[Path] = set()
    for name in names:
        lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                            Handler="app.handler", Role=support.ROLE, Code={"ZipFile": CODE})
        probe(lam, name, "noop")
        groups |= environment_cgroups(name)
    assert len(groups) >= 2, groups
    assert not groups & environment_cgroups(ours), "two servers share environment cgroups"
    pids = set().union(*(function_pids(n) for n in names))
    srv.proc.send_signal(15)  # SIGTERM: a clean shutdown
    rc = srv.proc.wait(timeout=10)
    srv.stop()
    assert rc == 0, srv.stderr_text()
    assert not support.wait_pids_dead(pids, timeout=2)

    # The other server's start and stop did not touch this server's environment...
    assert function_pids(ours) == our_pids and probe(ilam, ours, "noop") == before
    # ...and it left nothing behind: no environment cgroup, nor its own parent groups,
    # nor environment folders.
    left = sorted(str(g) for g in groups if g.exists())
    assert not left, f"environment cgroups left behind after the server stopped: {left}"
    parents = sorted({str(g.parent) for g in groups if g.parent.name != "shoal"
                      and g.parent.exists()})
    assert not parents, f"the stopped server's cgroups (parents of its environments' " \
                        f"groups) are still there: {parents}"
    envs = srv.data_dir / "envs"
    assert not envs.exists() or not any(envs.iterdir()), list(envs.iterdir())


# --------------------------------------------------------------------------- cold start


def test_a_burst_of_isolated_cold_starts_all_succeed(iso, hostile):
    # 80 environments at once: more than the spares, all racing for loop devices (/tmp)
    # and cgroups; every invocation gets its own environment and succeeds.
    name = hostile()
    results, elapsed = support.burst(80, lambda i: support.invoke_http(
        iso.endpoint, name, {"probe": "sleep", "seconds": 1}, timeout=60), timeout=90)
    failed = [r for r in results if not isinstance(r, support.HttpResult) or r.status != 200]
    assert not failed, failed[:3]
    envs = {r.json()["env_id"] for r in results}
    print(f"\n80 isolated cold starts at once: {elapsed:.2f}s, {len(envs)} environments")
    assert len(envs) == 80, len(envs)
    assert_server_fine(iso)



INIT_RE = re.compile(r"Init Duration: ([0-9.]+) ms")


def _cold_starts(lam, name: str, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        # A configuration change retires the environment: the next invoke starts cold.
        lam.update_function_configuration(FunctionName=name,
                                          Environment={"Variables": {"ROUND": str(i)}})
        r = invoke(lam, name, {}, LogType="Tail")
        assert r["StatusCode"] == 200 and "FunctionError" not in r, r["raw"]
        m = INIT_RE.search(r["log"])
        assert m, f"no Init Duration on a cold start:\n{r['log']}"
        out.append(float(m.group(1)))
    return out


def test_cold_start_with_and_without_isolation(ilam, server_with, client_for):
    plain = server_with(isolation="none")
    plam = client_for(plain)
    noop = support.py_zip("def handler(event, context):\n    return 'ok'\n")
    names = {}
    for label, lam in (("namespaces", ilam), ("none", plam)):
        names[label] = support.unique_name("cold")
        lam.create_function(FunctionName=names[label], Runtime=support.PY_RUNTIME,
                            Handler="app.handler", Role=support.ROLE, Code={"ZipFile": noop})
    try:
        isolated = _cold_starts(ilam, names["namespaces"], 5)
        unisolated = _cold_starts(plam, names["none"], 5)
    finally:
        ilam.delete_function(FunctionName=names["namespaces"])
    med_iso, med_none = statistics.median(isolated), statistics.median(unisolated)
    print(f"\nInit Duration, median of 5 cold starts of a no-op Python function: "
          f"namespaces {med_iso:.1f} ms {isolated}, none {med_none:.1f} ms {unisolated}")
    assert 0 < med_none < 2000 and 0 < med_iso < 3000, (isolated, unisolated)


def _spares_of(server_pid: int) -> set[int]:
    return support.children_running(server_pid, b"__sandbox-init")


def test_spare_sandboxes_wait_ready_and_go_with_a_killed_server(server_with):
    srv = server_with(isolation="namespaces", spare_sandboxes=3)
    spares = support.wait_for(lambda: _spares_of(srv.proc.pid), lambda s: len(s) == 3,
                              timeout=10, what="3 spare sandboxes")
    folders = list((srv.data_dir / "envs" / ".spares").iterdir())
    assert len(folders) == 3, folders
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=5)
    srv.proc = None
    # Their control socket closed with the server: they end by themselves.
    assert not support.wait_pids_dead(spares, timeout=5), "spares outlived a killed server"
    # A restart sweeps their folders and cgroups away and makes new spares.
    srv.start()
    support.wait_for(lambda: _spares_of(srv.proc.pid), lambda s: len(s) == 3, timeout=10,
                     what="3 new spare sandboxes")
    assert not any(f.exists() for f in folders), folders


def test_a_spare_that_became_an_environment_goes_with_it(server_with, client_for):
    srv = server_with(isolation="namespaces", spare_sandboxes=2)
    spares_dir = srv.data_dir / "envs" / ".spares"
    listing = lambda: {p.name for p in spares_dir.iterdir()} if spares_dir.exists() else set()
    before = support.wait_for(listing, lambda names: len(names) == 2, timeout=10,
                              what="2 spare sandboxes")
    lam = client_for(srv)
    name = support.unique_name("iso")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": CODE})
    assert probe(lam, name, "noop")["env_id"]
    # The pool makes a new spare for the one taken; the taken one lives on as the environment.
    support.wait_for(listing, lambda names: len(names) == 3, timeout=10,
                     what="a new spare beside the environment")
    lam.delete_function(FunctionName=name)
    after = support.wait_for(listing, lambda names: len(before - names) == 1, timeout=10,
                             what="the environment's folder (a spare's) to be removed")
    assert len(after) == 2, after
