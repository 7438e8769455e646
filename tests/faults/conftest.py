"""Fixtures of the fault suite: a crash-safe Redis of its own, an SMTP server, a rig."""
import pytest

from rig import Rig
from support.redis_server import RedisServer
from support.smtp_server import SMTPServer


def pytest_collection_modifyitems(items):
    for item in items:
        if '/faults/' in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@pytest.fixture
def aof_redis(tmp_path):
    """A private Redis with appendonly yes + appendfsync always: it may be kill -9ed."""
    server = RedisServer(appendonly=True, appendfsync='always', tmpdir=tmp_path / 'redis')
    (tmp_path / 'redis').mkdir()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def smtp():
    with SMTPServer() as server:
        yield server


@pytest.fixture
def make_rig(tmp_path, aof_redis, smtp):
    """make_rig(**ini sections) -> Rig; every process it started is stopped afterwards."""
    rigs = []

    def make(**sections):
        rig = Rig(tmp_path, aof_redis, smtp, **sections)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.stop_all()
