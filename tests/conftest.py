"""Shared fixtures: private Redis, real SMTP servers and mailq ini files."""
from pathlib import Path

import pytest

from support.ini import smtp_section, write_ini
from support.procs import REPO_ROOT
from support.redis_server import RedisServer
from support.smtp_server import SMTPServer

ARTIFACTS = REPO_ROOT / 'tests' / 'artifacts'


def artifacts_dir():
    """tests/artifacts/ (git-ignored): screenshots, logs and reports worth keeping."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def artifacts():
    return artifacts_dir()


@pytest.fixture(scope='session')
def redis_server(tmp_path_factory):
    """One private redis-server per session (never the shared one on 6379)."""
    server = RedisServer(appendonly=False, tmpdir=tmp_path_factory.mktemp('redis'))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """URL of the private server, emptied first so each test starts clean."""
    if redis_server.proc.poll() is not None:   # a test killed it
        redis_server.start()
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url, redis_server):
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture
def smtp_server():
    with SMTPServer() as server:
        yield server


@pytest.fixture
def smtp_factory():
    """smtp_factory(security=..., auth=..., require_starttls=...) -> SMTPServer."""
    servers = []

    def make(**options):
        server = SMTPServer(**options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def tmp_ini(tmp_path):
    """tmp_ini(name='mailq.ini', **sections) -> Path of the written ini."""
    def make(name='mailq.ini', **sections):
        return Path(write_ini(tmp_path / name, sections))
    return make


@pytest.fixture
def redis_ini(tmp_ini, redis_url):
    """A mailq.ini with the private Redis and the shipped mail templates only."""
    return tmp_ini(redis={'url': redis_url},
                   templates={'path': str(REPO_ROOT / 'templates' / 'mail')})


@pytest.fixture
def mailq_ini(tmp_ini, redis_url, smtp_server):
    """A complete mailq.ini wired to the private Redis and the test SMTP server."""
    return tmp_ini(
        redis={'url': redis_url},
        worker={'concurrency': '4', 'queues': 'mailers, default',
                'retry_base': '1', 'retry_max_delay': '2'},
        smtp=smtp_section(smtp_server, security='none'),
        templates={'path': str(REPO_ROOT / 'templates' / 'mail')},
    )


@pytest.fixture
def web(mailq_ini):
    """The mailq web app (API) on a free port, wired to the private Redis and SMTP server."""
    yield from _served(mailq_ini)


@pytest.fixture
def app(ini):
    """The web app for a test module's own `ini` fixture (dashboard, browser)."""
    yield from _served(ini)


def _served(ini):
    from support.mailq_app import WebApp
    app = WebApp(ini)
    yield app
    app.close()


@pytest.fixture
def worker(mailq_ini):
    """A `mailq worker -w 4` subprocess; stopped (SIGTERM) after the test."""
    from support.mailq_app import start_worker
    from support.procs import stop_process
    proc = start_worker(mailq_ini, '-w', '4')
    yield proc
    stop_process(proc)
