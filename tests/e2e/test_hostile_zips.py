"""Hostile deployment packages: nothing in a zip may write outside the function's code
folder or take the server down; each one is a 400 in Lambda's format.

The packages are built here with `zipfile` (which, unlike most zip writers, happily makes
links, links under links and names twice), and sent through CreateFunction and
UpdateFunctionCode of the real server.
"""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from pathlib import Path

import pytest

import support
from support import client_error, py_zip

ECHO_SRC = "def handler(event, context):\n    return event\n"
FILE = 0o100644
LINK = 0o120777


def _info(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def hostile_zip(entries: list[tuple[str, str | bytes, int]]) -> bytes:
    """A zip of (name, content or link target, mode) in this order, duplicates allowed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_info("app.py", FILE), ECHO_SRC)
        for name, data, mode in entries:
            with pytest.warns(UserWarning) if name in zf.namelist() else _nothing():
                zf.writestr(_info(name, mode), data)
    return buf.getvalue()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def assert_refused(err, mentions: str | None = None):
    resp = err.response
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400, resp
    assert resp["Error"]["Code"] == "InvalidParameterValueException", resp
    headers = resp["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("x-amzn-errortype", "").startswith("InvalidParameterValueException"), headers
    if mentions:
        assert mentions.lower() in resp["Error"]["Message"].lower(), resp


def create(lam, name, code):
    return lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME,
                               Handler="app.handler", Role=support.ROLE, Code={"ZipFile": code})


@pytest.fixture
def victim():
    """A host path that an escaping entry would create; removed if a test fails."""
    path = Path("/tmp") / f"ESCAPED-{uuid.uuid4().hex[:8]}"
    yield path
    if path.exists():
        path.unlink()


def chain(depth: int, victim_name: str) -> list[tuple[str, str, int]]:
    """The chain of the report: `…/l` leads back to the code root, `…/l/w` climbs
    `depth + 1` folders from there; both are lexically inside (each `..` matches a
    folder of its own entry's name), only the physical walk shows them leaving. A file
    under `w` then lands `depth + 1` folders above the code root."""
    base = "/".join(f"d{i}" for i in range(depth))
    return [
        (f"{base}/l", "/".join([".."] * depth), LINK),
        (f"{base}/l/w", "/".join([".."] * (depth + 1)), LINK),
        (f"{base}/l/w/tmp/{victim_name}", "owned\n", FILE),
    ]


def landing(server, depth: int, victim_name: str) -> Path:
    """Where the chain's file would land: the code root is `<data>/code/<staging>`."""
    above = (server.data_dir / "code" / "staging").parents
    ancestor = above[depth] if depth < len(above) else Path("/")
    return ancestor / "tmp" / victim_name


@pytest.mark.parametrize("depth", [1, 3, 9])
def test_link_chain_cannot_write_on_the_host(lam, server, unique_name, depth):
    victim_name = f"ESCAPED-{uuid.uuid4().hex[:8]}"
    target = landing(server, depth, victim_name)
    try:
        err = client_error(create, lam=lam, name=unique_name("chain"),
                           code=hostile_zip(chain(depth, victim_name)))
        assert_refused(err)
        assert not target.exists(), target
    finally:
        if target.exists():
            target.unlink()


def test_link_chain_through_update_function_code(lam, server, unique_name):
    name = unique_name("chain")
    create(lam, name, py_zip(ECHO_SRC))
    victim_name = f"ESCAPED-{uuid.uuid4().hex[:8]}"
    target = landing(server, 2, victim_name)
    try:
        err = client_error(lam.update_function_code, FunctionName=name,
                           ZipFile=hostile_zip(chain(2, victim_name)))
        assert_refused(err)
        assert not target.exists(), target
        # The function keeps its code.
        out = support.invoke(lam, name, {"kept": 1})
        assert out["json"] == {"kept": 1}, out
    finally:
        lam.delete_function(FunctionName=name)
        if target.exists():
            target.unlink()


@pytest.mark.parametrize("entries", [
    # A link to a link that leaves, written through before the check could see it.
    [("up", "..", LINK), ("x", "up/..", LINK), ("x/{victim}", "owned", FILE)],
    # The outer link made first, its inner link after.
    [("x", "d/up/../../..", LINK), ("d/up", "..", LINK), ("x/{victim}", "owned", FILE)],
    # Absolute targets.
    [("abs", "/", LINK), ("abs/{victim}", "owned", FILE)],
    [("abs", "/tmp", LINK)],
], ids=["link-to-link", "link-made-first", "absolute-write", "absolute"])
def test_links_never_carry_writes_out(lam, unique_name, victim, entries):
    rel = str(victim).lstrip("/")
    code = hostile_zip([(n.replace("{victim}", rel), d.replace("{victim}", rel), m)
                        for n, d, m in entries])
    err = client_error(create, lam=lam, name=unique_name("links"), code=code)
    assert_refused(err)
    assert not victim.exists()


def test_links_that_resolve_inside_still_deploy(lam, unique_name):
    """Links as real packages have them (lib64 -> lib, node_modules/.bin) keep working."""
    name = unique_name("links-ok")
    code = hostile_zip([
        ("lib/helper.py", "VALUE = 42\n", FILE),
        ("lib64", "lib", LINK),
        ("bin/helper.py", "../lib64/helper.py", LINK),
        ("handler.py", "import sys, os\nsys.path.insert(0, os.path.join(os.path.dirname("
                       "__file__), 'bin'))\nimport helper\n"
                       "def handler(e, c):\n    return helper.VALUE\n", FILE),
    ])
    lam.create_function(FunctionName=name, Runtime=support.PY_RUNTIME, Handler="handler.handler",
                        Role=support.ROLE, Code={"ZipFile": code})
    try:
        assert support.invoke(lam, name, {})["json"] == 42
    finally:
        lam.delete_function(FunctionName=name)


def test_name_over_255_bytes_is_a_client_error(lam, unique_name):
    code = hostile_zip([("n" * 256, "x", FILE)])
    assert_refused(client_error(create, lam=lam, name=unique_name("long"), code=code),
                   mentions="255")


@pytest.mark.parametrize("entries", [
    [("same", "x", FILE), ("same/inner", "y", FILE)],
    [("dir/inner", "y", FILE), ("dir", "x", FILE)],
], ids=["file-then-folder", "folder-then-file"])
def test_file_and_folder_of_one_path_is_a_client_error(lam, unique_name, entries):
    err = client_error(create, lam=lam, name=unique_name("clash"), code=hostile_zip(entries))
    assert_refused(err, mentions="same path")


def test_many_tiny_entries_are_refused_before_they_take_the_disk(lam, server, unique_name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("app.py", ECHO_SRC)
        for i in range(100_000):
            zf.writestr(f"f/{i}", b"x")
    code_dir = server.data_dir / "code"
    before = sum(1 for _ in code_dir.iterdir())
    err = client_error(create, lam=lam, name=unique_name("inodes"), code=buf.getvalue())
    assert_refused(err)
    assert sum(1 for _ in code_dir.iterdir()) == before, "nothing of it stays on disk"


def test_a_name_twice_never_follows_a_link(lam, unique_name, victim):
    """A file with the name of a link before it: opening it must not follow the link.
    (The later entry wins, or the package is refused; either way nothing leaves.)"""
    rel = str(victim).lstrip("/")
    name = unique_name("twice")
    code = hostile_zip([("same", "/".join([".."] * 14) + "/" + rel, LINK),
                        ("same", "owned", FILE)])
    try:
        create(lam, name, code)
    except Exception as e:  # noqa: BLE001 - a refusal is fine too
        assert_refused(e)
    else:
        lam.delete_function(FunctionName=name)
    assert not victim.exists()
