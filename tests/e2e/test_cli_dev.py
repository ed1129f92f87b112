"""The inner loop: `shoal dev` (`deploy --watch`) redeploys on every save, building first
with `--build` or cargo; `shoal deploy` builds a Cargo project's bootstrap itself."""

import json
import queue
import shutil
import subprocess
import threading
import time

import pytest

import support
from support import SHOAL_BIN, invoke

# A function on the Runtime API with Rust's standard library alone: it builds in a second.
TINY_RUST = r'''
use std::io::{Read, Write};
use std::net::TcpStream;

const MESSAGE: &str = "rust-v1";

fn call(api: &str, method: &str, path: &str, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(api).expect("the Runtime API");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    String::from_utf8_lossy(&answer).to_string()
}

fn main() {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").unwrap();
    loop {
        let next = call(&api, "GET", "/2018-06-01/runtime/invocation/next", b"");
        let id = next
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("lambda-runtime-aws-request-id").then(|| v.trim().to_string())
            })
            .unwrap();
        let body = format!("\"{MESSAGE}\"");
        call(&api, "POST", &format!("/2018-06-01/runtime/invocation/{id}/response"), body.as_bytes());
    }
}
'''

CARGO_TOML = '''[package]
name = "tiny-fn"
version = "0.1.0"
edition = "2021"

[[bin]]
name = "bootstrap"
path = "src/main.rs"

[workspace]
'''


def tiny_crate(root):
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text(CARGO_TOML)
    (root / "src" / "main.rs").write_text(TINY_RUST)
    return root


class Dev:
    """A running `shoal dev`: its stdout lines (and stderr's) as they come."""

    def __init__(self, server, *args):
        self.proc = subprocess.Popen(
            [str(SHOAL_BIN), *args, "--endpoint", server.endpoint],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._collect, daemon=True).start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.put((time.monotonic(), line.rstrip("\n")))

    def _collect(self):
        for line in self.proc.stderr:
            self.stderr.append((time.monotonic(), line.rstrip("\n")))

    def next_line(self, timeout=120):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"shoal dev printed nothing in {timeout} s; stderr:\n"
                        + "\n".join(l for _, l in self.stderr))

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def report(capsys):
    """report(text): print a measured figure to the terminal (not captured)."""

    def emit(text: str) -> None:
        with capsys.disabled():
            print(f"\n[test_cli_dev] {text}", flush=True)

    return emit


@pytest.fixture
def dev(server):
    started = []

    def start(*args):
        d = Dev(server, *args)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def answer_changes_to(lam, name, expected, timeout=30):
    """Invokes until the answer is `expected`; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        got = invoke(lam, name, {})["json"]
        if got == expected:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{name} still answers {got!r}, not {expected!r}"
        time.sleep(0.01)


def test_dev_redeploys_a_python_function_on_save(report, dev, lam, unique_name, tmp_path):
    src = tmp_path / "fn"
    src.mkdir()
    app = src / "app.py"
    app.write_text("def handler(event, context):\n    return 'py-v1'\n")
    name = unique_name("dev-py")
    d = dev("dev", str(src), "--name", name, "--runtime", support.PY_RUNTIME)
    try:
        _, first = d.next_line()
        assert f" deployed {name} in " in first, first
        assert invoke(lam, name, {})["json"] == "py-v1"
        figures = []
        for version in (2, 3, 4):
            saved = time.monotonic()
            app.write_text(f"def handler(event, context):\n    return 'py-v{version}'\n")
            answered = answer_changes_to(lam, name, f"py-v{version}")
            _, line = d.next_line()
            assert f" redeployed {name} in " in line and "after a change to app.py" in line, line
            figures.append((answered - saved) * 1000)
        report(f"shoal dev, Python: save -> first invoke answering the new code: "
                       f"{', '.join(f'{f:.0f}' for f in figures)} ms")
        assert max(figures) < 2000, figures
    finally:
        d.stop()
        lam.delete_function(FunctionName=name)


def test_dev_runs_the_build_command_and_survives_a_failed_build(report, dev, lam, unique_name,
                                                                 tmp_path):
    """--build writes --code; a failing build is reported and the next save recovers; the
    new code answers within a second of the build finishing."""
    src = tmp_path / "proj"
    (src / "src").mkdir(parents=True)
    (src / "src" / "app.py").write_text("def handler(event, context):\n    return 'built-v1'\n")
    build = ("echo compiling; sleep 0.3; python3 -m py_compile src/app.py && "
             "mkdir -p dist && cp src/app.py dist/app.py")
    name = unique_name("dev-build")
    d = dev("deploy", str(src), "--watch", "--name", name, "--runtime", support.PY_RUNTIME,
            "--build", build, "--code", str(src / "dist"))
    try:
        _, first = d.next_line()
        assert f" deployed {name} in " in first, first
        assert invoke(lam, name, {})["json"] == "built-v1"
        # The build's own output shows on stderr as it comes.
        assert any(l == "compiling" for _, l in d.stderr), d.stderr
        # A save that does not build: reported, nothing deployed, the loop goes on.
        (src / "src" / "app.py").write_text("def handler(event, context):\n    return (\n")
        deadline = time.monotonic() + 20
        while not any("build failed" in l for _, l in d.stderr):
            assert time.monotonic() < deadline, d.stderr
            time.sleep(0.05)
        assert invoke(lam, name, {})["json"] == "built-v1"
        (src / "src" / "app.py").write_text("def handler(event, context):\n    return 'built-v2'\n")
        answered = answer_changes_to(lam, name, "built-v2")
        _, line = d.next_line()
        assert f" redeployed {name} in " in line and "src/app.py" in line, line
        finished = [t for t, l in d.stderr if " build finished in " in l]
        assert finished, d.stderr
        after_build = answered - finished[-1]
        report(f"shoal dev --build: build finished -> new code answering: "
                       f"{after_build * 1000:.0f} ms")
        assert after_build < 1.0, after_build
        # The build's output folder is not watched: the build did not trigger itself.
        time.sleep(0.5)
        assert d.lines.empty(), d.lines.get()
    finally:
        d.stop()
        lam.delete_function(FunctionName=name)


@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs cargo")
def test_deploy_builds_a_cargo_project_and_dev_rebuilds_it(report, cli, dev, lam, unique_name,
                                                           tmp_path):
    crate = tiny_crate(tmp_path / "tiny")
    name = unique_name("dev-rust")
    out = cli("deploy", str(crate), "--name", name, "--runtime", "provided.al2023",
              timeout=300)
    try:
        assert out.returncode == 0, out.stderr
        assert "cargo build --release" in out.stderr, out.stderr
        assert json.loads(out.stdout)["Handler"]  # the configuration, as any deploy prints
        assert invoke(lam, name, {})["json"] == "rust-v1"
        d = dev("dev", str(crate), "--name", name, "--runtime", "provided.al2023")
        _, first = d.next_line(timeout=300)
        assert f" deployed {name} in " in first, first
        figures = []
        for version in (2, 3):
            main = crate / "src" / "main.rs"
            saved = time.monotonic()
            main.write_text(TINY_RUST.replace("rust-v1", f"rust-v{version}"))
            answered = answer_changes_to(lam, name, f"rust-v{version}", timeout=120)
            _, line = d.next_line()
            assert "after a change to src/main.rs" in line, line
            figures.append((answered - saved) * 1000)
        report(f"shoal dev, Rust (std only): save -> new code answering: "
                       f"{', '.join(f'{f:.0f}' for f in figures)} ms")
    finally:
        lam.delete_function(FunctionName=name)


def test_watch_needs_a_folder(cli, tmp_path):
    (tmp_path / "f.zip").write_bytes(b"PK")
    out = cli("dev", str(tmp_path / "f.zip"), "--name", "x", "--runtime", support.PY_RUNTIME)
    assert out.returncode != 0 and "needs a folder" in out.stderr, out
