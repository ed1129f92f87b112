"""The README's five-minute tour, run as written: every `shoal` command of its first block
against a server of its own (the commands that run until stopped, like `--follow` and
`shoal dev`, are started and stopped; lines with placeholders are left out)."""

import os
import re
import shutil
import subprocess
import time

import pytest

import support
from support import SHOAL_BIN

README = support.REPO / "README.md"


def tour_commands() -> list[str]:
    text = README.read_text()
    start = text.index("## A five-minute tour")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S).group(1)
    commands = []
    for line in block.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("export PATH"):
            continue
        # A trailing comment (what the command prints) is left to bash.
        commands.append(line)
    return commands


# Commands that do not end by themselves: started, given a moment, stopped.
def runs_until_stopped(command: str) -> bool:
    return "--follow" in command or command.startswith("shoal dev ")


def test_the_tour_names_the_new_commands():
    commands = tour_commands()
    assert any(c.startswith("shoal dev ") for c in commands)
    assert any(c.startswith("shoal deploy ./examples/hello-rust") for c in commands)
    assert any(c.startswith("shoal publish ") for c in commands)


def test_the_readme_tour_runs_as_written(own_server):
    env = dict(os.environ, PATH=f"{SHOAL_BIN.parent}:{os.environ['PATH']}",
               SHOAL_ENDPOINT=own_server.endpoint)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SHOAL_ACCESS_KEY_ID",
                "SHOAL_SECRET_ACCESS_KEY"):
        env.pop(key, None)
    ran = 0
    checked: set[str] = set()
    for command in tour_commands():
        if "<" in command and ">" in command:
            continue  # a placeholder (the URL deploy printed)
        if "--network egress" in command and shutil.which("slirp4netns") is None:
            continue
        if "hello-rust" in command and shutil.which("cargo") is None:
            continue
        if runs_until_stopped(command):
            proc = subprocess.Popen(["bash", "-c", command], cwd=support.REPO, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
            time.sleep(2)
            assert proc.poll() is None, f"{command} ended early:\n{proc.communicate()}"
            proc.kill()
            out, err = proc.communicate(timeout=10)
            if command.startswith("shoal dev "):
                assert " deployed hello in " in out, (command, out, err)
            ran += 1
            continue
        done = subprocess.run(["bash", "-c", command], cwd=support.REPO, env=env,
                              capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (
            f"README tour command failed: {command}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        ran += 1
        # What the tour's comments say it prints.
        if command.split("  #")[0].strip() == """shoal invoke hello --payload '{"name":"x"}'""":
            checked.add("hello")
            assert '"Hello, x!"' in done.stdout, done.stdout
        if "hello:live" in command:
            checked.add("alias")
            assert "executed version: 1" in done.stderr, done.stderr
        if command.startswith("shoal invoke hello-rust"):
            checked.add("rust")
            assert "Hello, crab!" in done.stdout, done.stdout
    assert ran >= 25, ran
    assert {"hello", "alias"} <= checked, checked
