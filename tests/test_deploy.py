"""Production settings pass Django's deployment checks, and secrets come only from the environment."""
import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _example_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def _manage(*args: str, **overrides: str) -> subprocess.CompletedProcess:
    # Only what production would have: not the test run's settings, nor the browser tests' async-unsafe switch.
    ignored = ("DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in ignored}
    env.update(_example_env())
    env.update({"DATABASE_URL": "sqlite:////tmp/labelhub-deploy-check.sqlite3", "CACHE_URL": "locmemcache://"})
    env.update(overrides)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_example_production_settings_pass_check_deploy():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_without_a_secret_key_production_refuses_to_start():
    result = _manage("check", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_web_process_loads_no_training_or_plotting_library():
    """scikit-learn, SciPy's statistics, matplotlib, skops and modAL cost a web process about 150 MB: they are
    imported where a model is trained, loaded or drawn, not when the app and every view are loaded."""
    code = (
        "import sys; from django.core.wsgi import get_wsgi_application; get_wsgi_application(); "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "print(' '.join(sorted({name.split('.')[0] for name in sys.modules} & "
        "{'sklearn', 'matplotlib', 'skops', 'modAL', 'pandas'} | ({'scipy.stats'} & set(sys.modules)))))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE")}
    env.update(_example_env())
    env.update({"DATABASE_URL": "sqlite:////tmp/labelhub-deploy-check.sqlite3", "CACHE_URL": "locmemcache://",
                "SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SETTINGS_MODULE": "labelhub.settings"})
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_gunicorn_keeps_an_idle_connection_through_an_experts_pause(tmp_path):
    """A client that pauses a few seconds between requests (an expert labeling) reuses its connection, and
    gunicorn leaves the home folder alone."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "XDG_RUNTIME_DIR")}
    home = tmp_path / "home"
    home.mkdir()
    env.update({"DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "VAR_DIR": str(tmp_path),
                "HOME": str(home)})
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "labelhub.wsgi", "--threads", "2", "-b", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", "/accounts/login/")
                first = connection.getresponse()
                first.read()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        time.sleep(3)  # longer than gunicorn's default keep-alive (2 s)
        connection.request("GET", "/accounts/login/")
        second = connection.getresponse()
        second.read()
        assert (first.status, second.status) == (200, 200)
        assert first.getheader("Connection", "").lower() != "close"
        # gunicorn.conf.py turns gunicorn's control socket off: nothing is written under the home folder.
        assert list(home.iterdir()) == []
    finally:
        server.terminate()
        server.wait(timeout=20)
