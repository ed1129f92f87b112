"""What survives a restart, and how code is stored on disk."""

import hashlib
import subprocess
import os

import support
from support import invoke, py_zip

SRC = "def handler(event, context):\n    return {'persisted': True, 'event': event}\n"


def test_function_survives_restart(own_server, client_for, unique_name):
    lam = client_for(own_server)
    name = unique_name("persist")
    code = py_zip(SRC)
    created = lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                                  Handler="app.handler", Role=support.ROLE,
                                  Code={"ZipFile": code}, MemorySize=256,
                                  Environment={"Variables": {"KEEP": "me"}},
                                  Tags={"team": "storage"})
    assert invoke(lam, name, {"n": 1})["json"] == {"persisted": True, "event": {"n": 1}}

    old_port = own_server.port
    own_server.restart()
    assert own_server.port == old_port

    lam = client_for(own_server)
    got = lam.get_function(FunctionName=name)["Configuration"]
    for key in ("FunctionName", "FunctionArn", "Runtime", "Handler", "CodeSha256", "CodeSize",
                "MemorySize", "Timeout", "LastModified", "Environment"):
        assert got[key] == created[key], key
    resp = invoke(lam, name, {"n": 2})
    assert "FunctionError" not in resp, resp["raw"]
    assert resp["json"] == {"persisted": True, "event": {"n": 2}}
    assert name in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert lam.list_tags(Resource=created["FunctionArn"])["Tags"] == {"team": "storage"}
    # Logs written before the restart are still there.
    events = support.all_log_events(own_server.endpoint, name)
    assert sum(e["message"].startswith("START RequestId:") for e in events) >= 2


def test_deleted_function_stays_deleted_after_restart(own_server, client_for, unique_name):
    lam = client_for(own_server)
    name = unique_name("persist")
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": py_zip(SRC)})
    lam.delete_function(FunctionName=name)
    own_server.restart()
    lam = client_for(own_server)
    assert name not in [f["FunctionName"] for f in lam.list_functions()["Functions"]]


def _entries_named_by(root, hex_digest: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            if hex_digest in n:
                found.append(os.path.join(dirpath, n))
    return found


def test_code_blob_stored_once_per_digest(server, make_fn, unique_name):
    # A zip of its own, so that its digest is new to this server.
    code = support.zip_files({"app.py": SRC, "unique.txt": unique_name("blob")})
    hex_digest = hashlib.sha256(code).hexdigest()
    code_dir = server.data_dir / "code"

    make_fn(code)
    assert code_dir.is_dir(), f"no {code_dir}: {sorted(os.listdir(server.data_dir))}"
    after_one = _entries_named_by(code_dir, hex_digest)
    assert after_one, f"nothing under {code_dir} is named by the sha256 {hex_digest}"

    make_fn(code)
    after_two = _entries_named_by(code_dir, hex_digest)
    assert sorted(after_two) == sorted(after_one), (
        f"the same zip was stored again: {after_one} -> {after_two}")


def test_kill_9_loses_nothing_acknowledged(own_server, client_for, unique_name):
    lam = client_for(own_server)
    name = unique_name("k9")
    code = py_zip(SRC)
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="app.handler",
                        Role=support.ROLE, Code={"ZipFile": code})
    lam.update_function_configuration(FunctionName=name, Timeout=11)
    assert invoke(lam, name, {"n": 1})["json"]["persisted"] is True
    own_server.proc.kill()  # SIGKILL the server alone, not its process group
    own_server.proc.wait(5)
    own_server.proc = None
    own_server.start()
    lam = client_for(own_server)
    got = lam.get_function_configuration(FunctionName=name)
    assert got["Timeout"] == 11
    assert got["CodeSha256"] == support.b64sha256(code)
    assert invoke(lam, name, {"n": 2})["json"] == {"persisted": True, "event": {"n": 2}}


def test_concurrent_creates_of_one_name(lam, unique_name):
    import threading

    name = unique_name("race")
    results: list = []

    def create():
        try:
            lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                                Handler="app.handler", Role=support.ROLE,
                                Code={"ZipFile": py_zip(SRC)})
            results.append("created")
        except Exception as e:  # noqa: BLE001
            results.append(getattr(e, "response", {}).get("Error", {}).get("Code", repr(e)))

    threads = [threading.Thread(target=create) for _ in range(5)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == ["ResourceConflictException"] * 4 + ["created"], results
    finally:
        try:
            lam.delete_function(FunctionName=name)
        except Exception:
            pass


def test_lost_store_refuses_to_start_and_keeps_the_code(own_server, client_for, unique_name):
    """A missing or emptied shoal.db beside a non-empty code/ is a lost store, not a new
    one: starting would lose every function and collect every package as unused."""
    lam = client_for(own_server)
    name = unique_name("lost")
    created = lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                                  Handler="app.handler", Role=support.ROLE,
                                  Code={"ZipFile": py_zip(SRC)})
    digest = base64_to_hex(created["CodeSha256"])
    own_server.stop()
    data = own_server.data_dir
    for how in ("emptied", "missing"):
        db = data / "shoal.db"
        saved = {p: p.read_bytes() for p in data.glob("shoal.db*")}
        for path in saved:
            path.unlink()
        if how == "emptied":
            db.write_bytes(b"")
        proc = subprocess.run([str(support.SHOAL_BIN), "server", "--data-dir", str(data),
                               "--listen", f"127.0.0.1:{support.free_port()}"],
                              capture_output=True, text=True, timeout=15,
                              stdin=subprocess.DEVNULL)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"{how}: started anyway:\n{out}"
        assert "shoal.db is missing or empty" in out, out
        assert _entries_named_by(data / "code", digest), f"{how}: the package was deleted"
        for path in list(data.glob("shoal.db*")):
            path.unlink()
        for path, content in saved.items():
            path.write_bytes(content)
    # With the store back, everything is there.
    own_server.start()
    lam = client_for(own_server)
    assert invoke(lam, name, {"n": 3})["json"] == {"persisted": True, "event": {"n": 3}}


def base64_to_hex(b64: str) -> str:
    import base64
    return base64.b64decode(b64).hex()


def test_concurrency_settings_apply_again_after_restart(own_server, client_for, unique_name):
    """At start every stored function is reconciled: reserved concurrency throttles and
    provisioned environments are started again without any API call."""
    lam = client_for(own_server)
    held = support.create_scaling_fn(lam, unique_name("reserved"))
    lam.put_function_concurrency(FunctionName=held, ReservedConcurrentExecutions=0)
    warm = support.create_scaling_fn(lam, unique_name("provisioned"))
    lam.publish_version(FunctionName=warm)
    lam.create_alias(FunctionName=warm, Name="live", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(FunctionName=warm, Qualifier="live",
                                           ProvisionedConcurrentExecutions=2)

    own_server.restart()
    lam = client_for(own_server)
    r = support.invoke_http(own_server.endpoint, held, {})
    assert r.status == 429, r
    assert r.json().get("Reason") == "ReservedFunctionConcurrentInvocationLimitExceeded", r
    cfg = support.wait_for(
        lambda: lam.get_provisioned_concurrency_config(FunctionName=warm, Qualifier="live"),
        lambda c: c["Status"] == "READY", timeout=10, interval=0.1,
        what="provisioned concurrency READY after the restart")
    assert cfg["AllocatedProvisionedConcurrentExecutions"] == 2
    assert len(support.function_pids(warm)) == 2
    resp = invoke(lam, warm, {}, Qualifier="live")
    assert resp["json"]["initType"] == "provisioned-concurrency", resp["raw"]
