"""`make run`: its processes stop quietly on Ctrl-C with make exiting 0, and its printed links name WEB_PORT."""
import io
import os
import pty
import select
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from annotations.management.commands import demo

ROOT = Path(__file__).resolve().parents[1]

# A main process with a helper in its process group, as Celery keeps its pool: the helper complains if it
# gets SIGTERM from outside (honcho's SIGTERM to the whole group) instead of being stopped by its main process.
MAIN = """
import os, signal, sys, time
child = os.fork()
if child == 0:
    signal.signal(signal.SIGTERM, lambda *_: (print("ERROR helper got SIGTERM from outside", flush=True), os._exit(1)))
    signal.signal(signal.SIGUSR1, lambda *_: os._exit(0))
    while True:
        time.sleep(0.1)
def stop(*_):
    os.kill(child, signal.SIGUSR1)
    os.waitpid(child, 0)
    print("main stopped its helper", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("main ready", flush=True)
while True:
    time.sleep(0.1)
"""


def _in_a_terminal(command: list[str], env: dict[str, str], ready: bytes, count: int) -> tuple[str, int]:
    """Run the command on a pseudo-terminal, press Ctrl-C once ``ready`` was printed ``count`` times."""
    pid, fd = pty.fork()
    if pid == 0:
        # As in a user's terminal, whatever the test run inherited (a run started in the background ignores it).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.chdir(ROOT)
        os.execvpe(command[0], command, env)
    output, pressed, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        if not pressed and output.count(ready) >= count:
            os.write(fd, b"\x03")
            pressed = True
        if select.select([fd], [], [], 0.1)[0]:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            output += data
    for _ in range(100):  # at most 10 s more: a run that never stops fails the test instead of hanging it
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)  # make's group; bin/run's processes each lead their own session
        _, status = os.waitpid(pid, 0)
        output += b"\n(still running 10 s after the output ended: killed)"
    os.close(fd)
    return output.decode(errors="replace"), os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("setsid") is None, reason="needs make and setsid")
def test_ctrl_c_stops_every_process_by_its_main_pid_and_make_exits_0(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(MAIN)
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"web: {sys.executable} {script}\nworker: {sys.executable} {script}\n")
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t@{ROOT / 'bin' / 'run'}\n")  # as `make run` calls it
    env = {**os.environ, "PROCFILE": str(procfile)}
    env.pop("LABELHUB_RUN_FOREGROUND", None)

    output, status = _in_a_terminal(["make", "-s", "-f", str(makefile), "run"], env, b"main ready", 2)

    assert status == 0, output
    assert "web    | main ready" in output and "worker | main ready" in output
    assert output.count("main stopped its helper") == 2
    assert "ERROR" not in output and "make: ***" not in output
    assert "Stopped." in output


def test_a_process_that_ends_on_its_own_stops_the_others_and_fails(tmp_path):
    script = tmp_path / "main.py"
    script.write_text(MAIN)
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"web: {sys.executable} {script}\nbroken: {sys.executable} -c 'import time; time.sleep(1); raise SystemExit(3)'\n")
    env = {**os.environ, "PROCFILE": str(procfile), "LABELHUB_RUN_FOREGROUND": "1"}

    result = subprocess.run([str(ROOT / "bin" / "run")], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    assert "ended on its own (exit status 3)" in result.stdout
    assert "web    | main stopped its helper" in result.stdout


@pytest.mark.django_db
def test_the_demo_prints_links_on_web_port(settings, monkeypatch, tmp_path):
    settings.LABELHUB_WEB_PORT = 18123
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(demo.Command, "_import_digits", lambda self, project, user: None)
    monkeypatch.setattr(demo.Command, "_import_wine", lambda self, project, user: None)
    out = io.StringIO()

    call_command("demo", stdout=out)

    text = out.getvalue()
    assert "http://127.0.0.1:18123/accounts/login/" in text
    assert "http://127.0.0.1:18123/api/projects/" in text
    assert ":8000" not in text


def test_the_makefile_banner_names_web_port():
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    banner = next(line for line in recipe.splitlines() if "LabelHub: http" in line)
    assert ":8000" not in banner.replace("$${WEB_PORT:-8000}", "")
    assert banner.count("$${WEB_PORT:-8000}") == 2
