"""The reports' web server serves report files only, and pid files are never trusted stale
(issue 16: the server listed folders and followed symlinks; ``blueprint stop`` signalled
whatever process had a dead service's pid)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from orchestration.lib.core.processes import live_pid, write_pid_file
from orchestration.lib.serving.process import free_port
from orchestration.settings import PROJECT_ROOT


@pytest.fixture
def reports(tmp_path):
    root = tmp_path / "reports"
    (root / "fraud" / "2018-09-20").mkdir(parents=True)
    (root / "index.html").write_text("<h1>reports</h1>")
    (root / "fraud" / "2018-09-20" / "data_drift.html").write_text("drift")
    secret = tmp_path / "secrets"
    secret.mkdir()
    (secret / "serving.token").write_text("s3cret")
    (root / "fraud" / "leak").symlink_to(secret)
    (root / "fraud" / "token.html").symlink_to(secret / "serving.token")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "blueprint_cli.report_server", str(port),
                               str(root)], cwd=PROJECT_ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/index.html", timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the report server did not start"
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=10)


def _status(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_the_report_server_serves_report_files_only(reports):
    assert _status(f"{reports}/fraud/2018-09-20/data_drift.html") == (200, b"drift")
    assert _status(f"{reports}/") == (200, b"<h1>reports</h1>")  # a folder: its index only
    assert _status(f"{reports}/fraud/")[0] == 404  # no listing
    assert _status(f"{reports}/fraud/2018-09-20/")[0] == 404
    assert _status(f"{reports}/fraud/leak/serving.token")[0] == 404  # no symlink followed
    assert _status(f"{reports}/fraud/token.html")[0] == 404


def test_a_pid_file_of_a_dead_or_reused_pid_is_not_trusted(tmp_path):
    path = tmp_path / "run" / "service.pid"
    write_pid_file(path, os.getpid())
    assert live_pid(path) == os.getpid()
    pid, started = path.read_text().split()
    path.write_text(f"{pid} {float(started) - 3600!r}\n")  # the pid now belongs to another
    assert live_pid(path) is None and not path.exists()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write_pid_file(path, child.pid)
    assert live_pid(path) == child.pid
    child.kill()
    child.wait()  # the process has ended: its recorded start time matches nobody
    assert live_pid(path) is None and not path.exists()
    path.write_text(f"{os.getpid()}\n")  # a file without its start time: not trusted
    assert live_pid(path) is None
