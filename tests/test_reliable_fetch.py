"""Reliable fetch at the Redis level: in-flight lists, orphans, reaping and stale tasks."""
import json
import os

import pytest

from mailq.config import load
from mailq.heartbeat import reap, release_orphans
from mailq.runtime import Runtime
from mailq import service


@pytest.fixture
def rt(mailq_ini):
    return Runtime(load(str(mailq_ini), environ={}))


def send(rt, **extra):
    return service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't', **extra})['id']


def test_fetch_moves_the_task_into_the_in_flight_list(rt, redis_client):
    mail_id = send(rt)
    queue, task = rt.store.fetch('w1', ['mailers', 'default'])
    assert queue == 'mailers' and json.loads(task)['args'] == [mail_id]
    assert redis_client.llen('mailq:q:mailers') == 0
    assert redis_client.lrange('mailq:inflight:w1', 0, -1) == [task]
    assert rt.store.fetch('w1', ['mailers', 'default']) is None


def test_paused_queue_is_skipped(rt, redis_client):
    send(rt, queue='mailers')
    other = send(rt, queue='default')
    redis_client.sadd('mailq:paused', 'mailers')
    queue, task = rt.store.fetch('w1', ['mailers', 'default'])
    assert queue == 'default' and json.loads(task)['args'] == [other]


def test_orphaned_in_flight_task_goes_back_after_two_sweeps(rt, redis_client):
    mail_id = send(rt)
    _, task = rt.store.fetch('w1', ['mailers'])       # the reply "was lost": nobody claims it
    suspects = release_orphans(rt.store, 'w1', set())
    assert suspects == {task} and redis_client.llen('mailq:inflight:w1') == 1
    suspects = release_orphans(rt.store, 'w1', suspects)
    assert redis_client.llen('mailq:inflight:w1') == 0
    assert redis_client.lrange('mailq:q:mailers', 0, -1) == [task]
    # a thread that wakes up late cannot claim it any more
    assert rt.store.claim(mail_id, task, 'w1', 'late-thread') is None


def test_claimed_task_is_not_an_orphan(rt, redis_client):
    mail_id = send(rt)
    _, task = rt.store.fetch('w1', ['mailers'])
    assert rt.store.claim(mail_id, task, 'w1', 't1') is not None
    suspects = release_orphans(rt.store, 'w1', release_orphans(rt.store, 'w1', set()))
    assert suspects == set() and redis_client.llen('mailq:inflight:w1') == 1
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'sending'


def test_dead_worker_is_reaped_by_heartbeat_age(rt, redis_client):
    mail_id = send(rt)
    _, task = rt.store.fetch('gone', ['mailers'])
    rt.store.claim(mail_id, task, 'gone', 't1')
    redis_client.zadd('mailq:workers', {'gone': 1000.0})
    assert reap(rt.store, now=1010.0, timeout=5) == {'gone': 1}
    assert redis_client.lrange('mailq:q:mailers', 0, -1) == [task]
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'queued'
    assert not redis_client.exists('mailq:inflight:gone', 'mailq:busy:gone')
    assert redis_client.zcard('mailq:workers') == 0


def test_dead_local_process_is_reaped_at_once(rt, redis_client):
    import socket
    send(rt)
    dead_pid = 2 ** 22 + 12345       # above pid_max: never a live process
    wid = f'{socket.gethostname()}:{dead_pid}:abc123'
    rt.store.fetch(wid, ['mailers'])
    redis_client.zadd('mailq:workers', {wid: 10 ** 12})   # heartbeat looks fresh
    assert reap(rt.store, timeout=5, local_host=socket.gethostname()) == {wid: 1}
    assert redis_client.llen('mailq:q:mailers') == 1


def test_stale_task_of_a_cancelled_mail_is_dropped(rt, redis_client):
    mail_id = send(rt)
    _, task = rt.store.fetch('w1', ['mailers'])
    assert service.cancel(rt, mail_id)['status'] == 'cancelled'
    assert rt.store.claim(mail_id, task, 'w1', 't1') is None
    assert redis_client.llen('mailq:inflight:w1') == 0


def test_due_scheduled_and_retry_tasks_move_to_their_queue(rt, redis_client):
    mail_id = send(rt, delay=60, queue='default')
    assert redis_client.zcard('mailq:schedule') == 1
    assert rt.store.move_due(now=1.0) == 0
    import time
    assert rt.store.move_due(now=time.time() + 61) == 1
    assert redis_client.llen('mailq:q:default') == 1
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'queued'
