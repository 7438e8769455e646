"""redis+sentinel:// URLs: parsing, and a real master/replica/sentinel failover under a worker."""
import os
import subprocess
import time

import pytest
import redis

from mailq import service
from mailq.config import load
from mailq.errors import ConfigError
from mailq.redisconn import SENTINEL_PORT, SentinelURL, parse_sentinel_url
from mailq.runtime import Runtime
from support.mailq_app import start_worker, stop_process
from support.procs import free_port, read_log
from support.redis_server import REDIS_SERVER


@pytest.mark.parametrize('url,expected', [
    ('redis+sentinel://10.0.0.1:26379,10.0.0.2:26380/mailq/2',
     SentinelURL((('10.0.0.1', 26379), ('10.0.0.2', 26380)), 'mailq', 2)),
    ('redis+sentinel://:s3cret@sentinel/mailq',
     SentinelURL((('sentinel', SENTINEL_PORT),), 'mailq', 0, None, 's3cret')),
    ('redis+sentinel://app:p%40ss@[::1]:5000,h2/mq/0',
     SentinelURL((('::1', 5000), ('h2', SENTINEL_PORT)), 'mq', 0, 'app', 'p@ss')),
])
def test_parse(url, expected):
    assert parse_sentinel_url(url) == expected


@pytest.mark.parametrize('url,error', [
    ('redis+sentinel://h1,h2', 'service_name'),
    ('redis+sentinel://h1/mq/x', 'db must be a number'),
    ('redis+sentinel://h1:port/mq', 'bad port'),
    ('redis+sentinel://,h2/mq', 'bad sentinel address'),
])
def test_bad_urls_are_config_errors_naming_the_key(tmp_ini, url, error):
    with pytest.raises(ConfigError) as exc:
        load(str(tmp_ini(redis={'url': url})), environ={})
    assert '[redis]:url' in str(exc.value) and error in str(exc.value)


class Proc:
    """A redis-server (or sentinel) in a temp dir; the test's own, never the shared one."""

    def __init__(self, tmp, name, *args, conf=None):
        self.port = free_port()
        self.dir = tmp / name
        self.dir.mkdir()
        cmd = [REDIS_SERVER]
        if conf is not None:     # sentinels need a writable config file
            path = self.dir / 'sentinel.conf'
            path.write_text(conf.replace('PORT', str(self.port)))
            cmd += [str(path), '--sentinel']
        cmd += ['--port', str(self.port), '--bind', '127.0.0.1', '--dir', str(self.dir),
                '--save', '', '--logfile', str(self.dir / 'log'), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)
        wait(lambda: self._ping(), f'{name} to start', self)

    def _ping(self):
        try:
            return self.client.ping()
        except redis.ConnectionError:
            return False

    def log(self):
        return (self.dir / 'log').read_text()

    def stop(self, sig=15):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)


def wait(condition, what, proc=None, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'waited {timeout}s for {what}' +
                                 (f'\n{proc.log()}' if proc else ''))
        time.sleep(0.1)


@pytest.fixture
def sentinel_setup(tmp_path):
    master = Proc(tmp_path, 'master', '--appendonly', 'yes')
    replica = Proc(tmp_path, 'replica', '--appendonly', 'yes',
                   '--replicaof', '127.0.0.1', str(master.port))
    sentinel = Proc(tmp_path, 'sentinel', conf=(
        f'sentinel monitor mq 127.0.0.1 {master.port} 1\n'
        'sentinel down-after-milliseconds mq 1000\n'
        'sentinel failover-timeout mq 10000\n'))
    wait(lambda: replica.client.info('replication')['master_link_status'] == 'up',
         'the replica to sync', replica)
    yield master, replica, sentinel
    for proc in (sentinel, replica, master):
        proc.stop()


def test_worker_keeps_delivering_across_a_failover(sentinel_setup, tmp_ini, smtp_server):
    master, replica, sentinel = sentinel_setup
    url = f'redis+sentinel://127.0.0.1:{sentinel.port}/mq/0'
    ini = tmp_ini('sentinel.ini', redis={'url': url},
                  worker={'concurrency': '2', 'heartbeat_timeout': '30'},
                  smtp={'transport': 'smtp', 'host': '127.0.0.1', 'port': smtp_server.port,
                        'timeout': '5'})
    rt = Runtime(load(str(ini), environ={}))
    worker = start_worker(ini, env={'PYTHONUNBUFFERED': '1'})
    try:
        first = service.send(rt, {'to': 'a@example.com', 'subject': 'one', 'text': 'x'})
        smtp_server.wait_for(1, timeout=20)
        wait(lambda: master.client.hget(f'mailq:m:{first["id"]}', 'status') == 'sent',
             'the first outcome to be recorded')
        # Queue a mail with no worker able to take it, make sure the replica has it, then
        # lose the master host.
        rt.redis.sadd('mailq:paused', 'mailers')
        second = service.send(rt, {'to': 'b@example.com', 'subject': 'two', 'text': 'y'})
        assert rt.redis.wait(1, 5000) == 1
        master.stop(sig=9)
        wait(lambda: sentinel.client.sentinel_get_master_addr_by_name('mq')[1]
             == replica.port, 'the sentinel to promote the replica', sentinel)
        # The same Runtime (pool) now talks to the new master, and the worker follows too.
        wait(lambda: _answers(rt), 'the pool to reach the new master')
        assert rt.redis.srem('mailq:paused', 'mailers') == 1
        messages = smtp_server.wait_for(2, timeout=40)
        wait(lambda: replica.client.hget(f'mailq:m:{second["id"]}', 'status') == 'sent',
             'the second outcome to be recorded on the new master')
    finally:
        stop_process(worker)
    assert [m.rcpt_tos for m in messages] == [['a@example.com'], ['b@example.com']]
    assert 'Redis unreachable' in read_log(worker)


def _answers(rt):
    try:
        return rt.redis.ping()
    except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
        return False
