"""Start and stop a use case's scoring service (``bentos/scorer``) as a background process.

``bentoml serve`` runs in a process group of its own (so stopping it ends its workers too), on
127.0.0.1, with the environment the pipeline runs in: ``BLUEPRINT_HOME``, ``BENTOML_HOME`` under
it, telemetry off, one BLAS/OpenMP thread. Its output goes to ``BLUEPRINT_HOME/logs/``; its
process group id to ``BLUEPRINT_HOME/serving/<use case>/scorer.pid`` for a later ``stop``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestration.lib.core.processes import live_pid, write_pid_file
from orchestration.lib.serving.bento import SERVICE
from orchestration.lib.serving.guard import ensure_serving_token
from orchestration.settings import (
    NO_TELEMETRY_ENV,
    PROJECT_ROOT,
    USECASE_ENV,
    Settings,
    get_settings,
)


def free_port() -> int:
    """A TCP port nobody listens on now, on 127.0.0.1 (for a local server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

HOST = "127.0.0.1"
PID_NAME = "scorer.pid"
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
"""Requests are single rows: more BLAS threads only compete for the cores."""
STOP_TIMEOUT_S = 20.0


class ServingStartError(RuntimeError):
    """The service did not become ready in time (the message says why and where its log is)."""


@dataclass(frozen=True)
class ScoringServer:
    """A running scoring service."""

    pid: int
    """Its process id, also its process group id."""
    url: str
    log_path: Path

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop it: SIGTERM to its process group (a clean shutdown closes the prediction log
        file), SIGKILL after ``timeout_s``."""
        stop_process_group(self.pid, timeout_s)


def service_env(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment ``bentoml serve`` runs with."""
    env = dict(os.environ if base is None else base)
    env.update(NO_TELEMETRY_ENV)
    env.update(SINGLE_THREAD_ENV)
    env["BLUEPRINT_HOME"] = str(settings.home)
    env["BENTOML_HOME"] = str(settings.bentoml_home)
    env[USECASE_ENV] = settings.usecase_name
    return env


def log_name(settings: Settings) -> str:
    """The service's log file under ``BLUEPRINT_HOME/logs/``."""
    return f"{settings.usecase_name}-scorer.log"


def pid_path(settings: Settings) -> Path:
    return settings.serving_dir / PID_NAME


def start_scoring_service(
    settings: Settings | None = None,
    port: int | None = None,
    *,
    wait_ready: bool = True,
    timeout_s: float | None = None,
    env: Mapping[str, str] | None = None,
) -> ScoringServer:
    """Start ``bentoml serve`` for the scoring service on 127.0.0.1:``port`` (default
    BLUEPRINT_SERVING_PORT) and wait until ``/readyz`` answers 200 (or, without
    ``wait_ready``, until ``/livez`` does), at most ``timeout_s`` (default
    BLUEPRINT_SERVING_START_TIMEOUT_SECONDS). On failure the process is stopped and
    `ServingStartError` says why. ``env``: the base environment (default: this process's).
    """
    settings = settings or get_settings()
    port = port or settings.serving_port
    timeout_s = settings.serving_start_timeout_seconds if timeout_s is None else timeout_s
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / log_name(settings)
    ensure_serving_token(settings)  # before any worker starts: they all read the same one
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", HOST,
             "--port", str(port), "--working-dir", str(PROJECT_ROOT)],
            cwd=PROJECT_ROOT,
            env=service_env(settings, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it ends its workers too
        )
    write_pid_file(pid_path(settings), process.pid)
    server = ScoringServer(pid=process.pid, url=f"http://{HOST}:{port}", log_path=log_path)
    url_path(settings).write_text(f"{server.url}\n")
    try:
        _wait(server, process, "/readyz" if wait_ready else "/livez", timeout_s)
    except BaseException:
        server.stop()
        pid_path(settings).unlink(missing_ok=True)
        raise
    return server


def url_path(settings: Settings) -> Path:
    return settings.serving_dir / "service.url"


def running_service_url(settings: Settings | None = None) -> str | None:
    """The URL of the service started from this BLUEPRINT_HOME, if it runs."""
    settings = settings or get_settings()
    if running_scoring_service(settings) is None:
        return None
    try:
        return url_path(settings).read_text().strip() or None
    except FileNotFoundError:
        return f"http://{HOST}:{settings.serving_port}"


def running_scoring_service(settings: Settings | None = None) -> int | None:
    """The process group id of the service started from this BLUEPRINT_HOME, if it runs."""
    return live_pid(pid_path(settings or get_settings()))


def stop_scoring_service(settings: Settings | None = None) -> bool:
    """Stop the service started from this BLUEPRINT_HOME; False if none was running."""
    settings = settings or get_settings()
    pid = running_scoring_service(settings)
    if pid is not None:
        stop_process_group(pid, STOP_TIMEOUT_S)
    pid_path(settings).unlink(missing_ok=True)
    return pid is not None


def readiness(url: str, timeout_s: float = 2.0) -> tuple[int, dict]:
    """``GET /readyz`` of a running service: its status code and JSON body."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read() or b"{}")
        except ValueError:
            body = {}
        return error.code, body


def _wait(server: ScoringServer, process: subprocess.Popen, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServingStartError(
                f"the scoring service exited with code {process.returncode}; "
                f"see {server.log_path}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            last = f"{error.code} {body}"
        except OSError as error:
            last = str(error)
        time.sleep(0.25)
    raise ServingStartError(
        f"the scoring service was not ready within {timeout_s:.0f} s ({path}: {last}); "
        f"see {server.log_path}"
    )


def stop_process_group(pid: int, timeout_s: float) -> None:
    """SIGTERM to a process group, SIGKILL after ``timeout_s`` (a process can inherit SIGTERM
    ignored from whatever launched its parent: it must still stop)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # when it is our child: reap it, or it stays a zombie
        except ChildProcessError:
            pass  # started by another process (`blueprint stop`): nothing to reap
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
