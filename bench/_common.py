"""Shared plumbing for benchmarks: a throwaway PostgreSQL database, processes, RSS, results."""
from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BIN = Path(PY).parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"


def _admin_connect(url: str):
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True)


@contextmanager
def bench_environment(name: str, *, broker_db: int | None = None):
    """Create a database of the benchmark's own, point settings at it, drop it afterwards.

    The Redis database it flushes and uses is ``broker_db``, else ``BENCH_BROKER_DB``, else 9:
    benchmarks run side by side must each have their own.
    """
    if broker_db is None:
        broker_db = int(os.environ.get("BENCH_BROKER_DB", "9"))
    base = os.environ.get("DATABASE_URL", DEFAULT_DB)
    db_name = f"labelhub_bench_{name}_{uuid.uuid4().hex[:6]}"
    url = urlunsplit(urlsplit(base)._replace(path=f"/{db_name}"))
    broker = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER)
    broker = broker.rsplit("/", 1)[0] + f"/{broker_db}" if broker.startswith("redis://") else broker
    var_dir = Path("/tmp") / db_name
    var_dir.mkdir(parents=True)
    with _admin_connect(base) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "CELERY_BROKER_URL": broker,
        "SECRET_KEY": "bench-only",
        "DEBUG": "0",
        "VAR_DIR": str(var_dir),
        "CACHE_URL": "locmemcache://",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "DJANGO_SETTINGS_MODULE": "labelhub.settings",
    }
    os.environ.update(env)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    if broker.startswith("redis://"):
        import redis

        redis.Redis.from_url(broker).flushdb()
    try:
        yield env
    finally:
        from django.db import connections

        connections.close_all()
        with _admin_connect(base) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        subprocess.run(["rm", "-rf", str(var_dir)], check=False)


def start(argv: list[str], env: dict, log_name: str) -> subprocess.Popen:
    """Start a process in its own group, logging to /tmp."""
    log = open(f"/tmp/labelhub-bench-{log_name}.log", "w")
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def start_worker(env: dict, *, concurrency: int, queues: str = "default,scoring,training", name: str = "w1"):
    """Start a Celery worker and wait until it answers."""
    proc = start(
        [str(BIN / "celery"), "-A", "labelhub", "worker", "-Q", queues, "-c", str(concurrency),
         "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "-l", "INFO"],
        env, f"worker-{name}",
    )
    deadline = time.time() + 60
    log_path = Path(f"/tmp/labelhub-bench-worker-{name}.log")
    while time.time() < deadline:
        if "ready." in log_path.read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited: {log_path.read_text()[-2000:]}")
        time.sleep(0.3)
    raise RuntimeError("worker did not become ready")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gunicorn_start(env: dict, port: int, *, log_name: str = "gunicorn", boot_timeout: float = 60,
                   request_timeout: int | None = None) -> subprocess.Popen:
    """Start gunicorn (4 processes × 4 threads) on loopback and wait until it serves the login page."""
    argv = [str(BIN / "gunicorn"), "labelhub.wsgi", "-w", "4", "--threads", "4", "-b", f"127.0.0.1:{port}"]
    if request_timeout is not None:
        argv += ["--timeout", str(request_timeout)]
    proc = start(argv, env, log_name)
    deadline = time.time() + boot_timeout
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/accounts/login/")
            if connection.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            log = Path(f"/tmp/labelhub-bench-{log_name}.log").read_text()[-2000:]
            raise RuntimeError(f"gunicorn exited: {log}")
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError("gunicorn did not start")


def stop(proc: subprocess.Popen) -> None:
    """Stop a process group started by start()."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def tree_peak_rss_mb(pid: int) -> float:
    """Largest VmHWM (peak resident set) among a process and its children, in MB."""
    peak = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            continue
    return round(peak / 1024, 1)


def self_peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def emit(name: str, figures: dict, *, save: bool = True) -> None:
    """Print the figures as the last stdout line and (unless ``save`` is False, for a partial run)
    write them to bench/results/NAME.json."""
    figures = {
        **figures,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(["python", f"bench/{name}.py", *sys.argv[1:]]),
    }
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
