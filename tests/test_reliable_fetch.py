"""Reliable fetch at the Redis level: in-flight lists, orphans, reaping and stale tasks."""
import json

import pytest

from mailq.config import load
from mailq.heartbeat import Heartbeat, pid_namespace, reap, release_orphans
from mailq.runtime import Runtime
from mailq.store.containers import task_mail_id
from mailq import service


@pytest.fixture
def rt(mailq_ini):
    return Runtime(load(str(mailq_ini), environ={}))


def send(rt, **extra):
    return service.send(rt, {'to': 'ann@example.com', 'subject': 's', 'text': 't', **extra})['id']


def take(rt, worker_id, queues=('mailers', 'default'), busy='t1'):
    return rt.store.take(worker_id, list(queues), busy)


def lose_reply(rt, worker_id, busy='t1'):
    """What a thread does after its take's reply was lost: it takes again, and that
    take drops the thread's stale busy entry."""
    assert take(rt, worker_id, busy=busy) is None


def test_take_moves_the_task_into_the_in_flight_list_and_claims_it(rt, redis_client):
    mail_id = send(rt)
    queue, task, claim = take(rt, 'w1')
    assert queue == 'mailers' and task_mail_id(task) == mail_id
    assert claim == ('mailq@example.com', ['ann@example.com'],
                     rt.store.raw(mail_id), 1, [], '')  # no relay
    assert b'Subject: s\r\n' in claim[2]   # the message, not its stored form
    assert redis_client.llen('mailq:q:mailers') == 0
    assert redis_client.lrange('mailq:inflight:w1', 0, -1) == [task]
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'sending'
    assert json.loads(redis_client.hget('mailq:busy:w1', 't1'))['id'] == mail_id
    assert take(rt, 'w1', busy='t2') is None


def test_an_outcome_written_twice_is_recorded_once(rt, redis_client):
    """The processor repeats finish() when Redis drops its reply; the repeat must not
    log the attempt or count the delivery a second time."""
    mail_id = send(rt)
    _, task, _ = take(rt, 'w1')
    attempt = {'at': 1764400000.25, 'worker': 'w1', 'outcome': 'sent', 'code': 250}
    for _ in range(2):
        assert rt.store.finish(mail_id, task, 'w1', 't1', 'sent', attempt,
                               now=attempt['at']) == (1, None)
    assert redis_client.get(f'mailq:m:{mail_id}:attempts').count(b'\n') == 1
    assert len(rt.store.get(mail_id).attempts) == 1
    assert redis_client.get('mailq:stat:processed') == b'1'
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'sent'


def test_paused_queue_is_skipped(rt, redis_client):
    send(rt, queue='mailers')
    other = send(rt, queue='default')
    redis_client.sadd('mailq:paused', 'mailers')
    queue, task, _ = take(rt, 'w1')
    assert queue == 'default' and task_mail_id(task) == other


def test_orphaned_in_flight_task_goes_back_after_two_sweeps(rt, redis_client):
    mail_id = send(rt)
    _, task, _ = take(rt, 'w1')
    lose_reply(rt, 'w1')
    suspects = release_orphans(rt.store, 'w1', set())
    assert suspects == {task} and redis_client.llen('mailq:inflight:w1') == 1
    suspects = release_orphans(rt.store, 'w1', suspects)
    assert redis_client.llen('mailq:inflight:w1') == 0
    assert redis_client.lrange('mailq:q:mailers', 0, -1) == [task]
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'queued'
    assert redis_client.hget(f'mailq:m:{mail_id}', 'attempts') == b'0'   # never sent
    queue, again, claim = take(rt, 'w2')
    assert again == task and claim[3] == 1      # delivered from there, as a first attempt


def test_claimed_task_is_not_an_orphan(rt, redis_client):
    mail_id = send(rt)
    assert take(rt, 'w1') is not None
    suspects = release_orphans(rt.store, 'w1', release_orphans(rt.store, 'w1', set()))
    assert suspects == set() and redis_client.llen('mailq:inflight:w1') == 1
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'sending'


def test_dead_worker_is_reaped_by_heartbeat_age(rt, redis_client):
    mail_id = send(rt)
    _, task, _ = take(rt, 'gone')
    redis_client.zadd('mailq:workers', {'gone': 1000.0})
    assert reap(rt.store, now=1010.0, timeout=5) == {'gone': 1}
    assert redis_client.lrange('mailq:q:mailers', 0, -1) == [task]
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'queued'
    assert not redis_client.exists('mailq:inflight:gone', 'mailq:busy:gone', 'mailq:ahead:gone')
    assert redis_client.zcard('mailq:workers') == 0


def local_worker(rt, redis_client, pidns):
    """A worker of this host whose pid is not running, registered with `pidns`."""
    import socket
    dead_pid = 2 ** 22 + 12345       # above pid_max: never a live process
    wid = f'{socket.gethostname()}:{dead_pid}:abc123'
    take(rt, wid)
    redis_client.zadd('mailq:workers', {wid: 10 ** 12})   # heartbeat looks fresh
    redis_client.hset(f'mailq:w:{wid}', 'pidns', pidns)
    return wid, socket.gethostname()


def test_dead_local_process_is_reaped_at_once(rt, redis_client):
    send(rt)
    wid, host = local_worker(rt, redis_client, pid_namespace())
    assert reap(rt.store, local_host=host) == {wid: 1}
    assert redis_client.llen('mailq:q:mailers') == 1


def test_a_worker_of_another_pid_namespace_is_left_to_its_heartbeat(rt, redis_client):
    """Two containers may share a hostname; our pid table says nothing of theirs."""
    send(rt)
    wid, host = local_worker(rt, redis_client, 'pid:[1]')
    assert reap(rt.store, local_host=host) == {}
    assert redis_client.llen(f'mailq:inflight:{wid}') == 1


def test_heartbeat_reaps_only_after_beating_for_the_timeout(rt, redis_client):
    """After a Redis outage, a worker whose beat came back first must not reap the
    others before they had the time to beat again."""
    send(rt)
    take(rt, 'other')
    beat = Heartbeat(rt.store, 'me', {'host': 'h'}, rt.config.worker, on_quiet=None)
    redis_client.zadd('mailq:workers', {'other': rt.store.workers.redis_time() - 60})
    beat.tick()
    assert redis_client.llen('mailq:inflight:other') == 1
    beat.beating_since -= rt.config.worker.heartbeat_timeout
    beat.tick()
    assert redis_client.llen('mailq:inflight:other') == 0
    assert redis_client.llen('mailq:q:mailers') == 1


def test_an_outage_restarts_the_wait_before_reaping(rt, redis_client, monkeypatch):
    import redis as redis_module
    beat = Heartbeat(rt.store, 'me', {'host': 'h'}, rt.config.worker, on_quiet=None)
    beat.tick()
    assert beat.beating_since is not None

    def down(*args, **kwargs):
        raise redis_module.ConnectionError('Redis went away')
    monkeypatch.setattr(beat, 'beat', down)
    beat.tick()
    assert beat.beating_since is None and beat.redis_down


def test_a_mail_interrupted_too_often_goes_dead_not_back(rt, redis_client):
    """A poison pill: a mail whose sending kills its worker must not take down
    every worker in turn, forever."""
    from mailq import admin
    from mailq.store import MAX_INTERRUPTIONS
    mail_id = send(rt)
    for n in range(1, MAX_INTERRUPTIONS):
        assert take(rt, f'w{n}') is not None
        assert rt.store.requeue_worker(f'w{n}') == 1
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'queued'
    assert redis_client.hget(f'mailq:m:{mail_id}', 'attempts') == b'0'   # none recorded
    assert take(rt, 'last') is not None
    assert rt.store.requeue_worker('last') == 0
    record = rt.store.get(mail_id).fields
    assert record['status'] == 'dead' and f'{MAX_INTERRUPTIONS} times' in record['last_error']
    assert rt.store.get(mail_id).attempts[-1]['outcome'] == 'dead'
    assert redis_client.zscore('mailq:dead', mail_id) is not None
    assert redis_client.llen('mailq:q:mailers') == 0
    assert admin.act(rt, 'dead', 'retry', [mail_id])['done'] == 1     # a fresh budget
    assert take(rt, 'again') is not None and rt.store.requeue_worker('again') == 1


def test_stale_task_of_a_cancelled_mail_is_dropped(rt, redis_client):
    cancelled = send(rt)
    assert service.cancel(rt, cancelled)['status'] == 'cancelled'
    redis_client.lpush('mailq:q:mailers', redis_client.hget(f'mailq:m:{cancelled}', 'task'))
    live = send(rt)
    queue, task, _ = take(rt, 'w1')          # the stale task is dropped on the way
    assert task_mail_id(task) == live
    assert redis_client.lrange('mailq:inflight:w1', 0, -1) == [task]
    assert redis_client.hget(f'mailq:m:{cancelled}', 'status') == b'cancelled'


def test_due_scheduled_and_retry_tasks_move_to_their_queue(rt, redis_client):
    mail_id = send(rt, delay=60, queue='default')
    assert redis_client.zcard('mailq:schedule') == 1
    assert rt.store.move_due(now=1.0) == 0
    import time
    assert rt.store.move_due(now=time.time() + 61) == 1
    assert redis_client.llen('mailq:q:default') == 1
    assert redis_client.hget(f'mailq:m:{mail_id}', 'status') == b'queued'


def test_the_outcome_fetches_the_threads_next_task_in_the_same_call(rt, redis_client):
    """finish() with then_fetch moves the next task into the in-flight list at once, so
    a thread spends two round trips a mail (finish + fetch, claim), not three."""
    first, second = send(rt), send(rt)
    _, task, _ = take(rt, 'w1')
    attempt = {'at': 1764400000.5, 'worker': 'w1', 'outcome': 'sent', 'code': 250}
    recorded, upcoming = rt.store.finish(first, task, 'w1', 't1', 'sent', attempt,
                                         then_fetch=['mailers', 'default'])
    assert recorded == 1 and upcoming[0] == 'mailers'
    assert redis_client.lrange('mailq:inflight:w1', 0, -1) == [upcoming[1]]
    assert redis_client.llen('mailq:q:mailers') == 0
    # Not yet claimed: an orphan for the sweep if the thread were lost now.
    assert redis_client.hget(f'mailq:m:{second}', 'status') == b'queued'
    queue, again, claim = rt.store.claim('w1', *upcoming, 't1')
    assert again == upcoming[1] and claim[3] == 1
    assert redis_client.hget(f'mailq:m:{second}', 'status') == b'sending'
    assert rt.store.finish(second, again, 'w1', 't1', 'sent', attempt,
                           then_fetch=['mailers'])[1] is None     # nothing left


def test_a_quiet_worker_gives_back_the_task_fetched_with_an_outcome(rt, redis_client):
    from mailq.fetch import MailStorage
    first, second = send(rt), send(rt)
    storage = MailStorage(rt.store, rt.pool, [('mailers', 0)], read_timeout=0.01)
    storage.bind_worker('w1')
    _, task, _ = take(rt, 'w1')
    attempt = {'at': 1764400000.5, 'worker': 'w1', 'outcome': 'sent', 'code': 250}
    _, upcoming = rt.store.finish(first, task, 'w1', 't1', 'sent', attempt,
                                  then_fetch=['mailers'])
    storage.keep(upcoming)
    storage.quiet.set()
    assert storage.after_outcome() == ((), 0, None)    # a quiet worker fetches nothing more
    assert storage.dequeue() is None
    assert redis_client.llen('mailq:inflight:w1') == 0
    assert redis_client.lrange('mailq:q:mailers', 0, -1) == [upcoming[1]]
    assert redis_client.hget(f'mailq:m:{second}', 'status') == b'queued'


ATTEMPT = {'at': 1764400000.5, 'worker': 'w1', 'outcome': 'sent', 'code': 250}


@pytest.fixture
def writes(rt, monkeypatch):
    """Counts the writes (round trips) sent on the pool's connections."""
    sent = []
    cls = rt.pool.connection_class
    original = cls.send_packed_command
    monkeypatch.setattr(cls, 'send_packed_command',
                        lambda conn, *a, **kw: (sent.append(1), original(conn, *a, **kw))[1])
    return sent


def test_an_outcome_claims_the_task_fetched_ahead_in_the_same_write(rt, redis_client, writes):
    """While the queue is long, a thread's finish carries the claim of the task it fetched
    ahead and fetches the one after: one round trip a mail."""
    ids = [send(rt) for _ in range(5)]
    _, task, _ = take(rt, 'w1')
    _, upcoming = rt.store.finish(ids[0], task, 'w1', 't1', 'sent', ATTEMPT,
                                  then_fetch=['mailers'])
    del writes[:]
    item, ahead = rt.store.claim_fetching_ahead('w1', *upcoming, 't1', ['mailers'], 1)
    assert len(writes) == 1
    assert task_mail_id(item[1]) == ids[1] and task_mail_id(ahead[1]) == ids[2]
    assert redis_client.hget('mailq:ahead:w1', 't1') == ahead[1]
    assert redis_client.hget(f'mailq:m:{ids[2]}', 'status') == b'queued'
    del writes[:]
    recorded, fetched, claimed = rt.store.finish(
        ids[1], item[1], 'w1', 't1', 'sent', ATTEMPT, then_fetch=['mailers'], fetch_min=1,
        then_claim=ahead)
    assert len(writes) == 1 and recorded == 1
    assert claimed[1] == ahead[1] and claimed[2][3] == 1
    assert task_mail_id(fetched[1]) == ids[3]          # two left: more than 1
    assert redis_client.hget(f'mailq:m:{ids[1]}', 'status') == b'sent'
    assert redis_client.hget(f'mailq:m:{ids[2]}', 'status') == b'sending'
    assert json.loads(redis_client.hget('mailq:busy:w1', 't1'))['id'] == ids[2]
    assert redis_client.hget('mailq:ahead:w1', 't1') == fetched[1]
    # One task left, not more than fetch_min: nothing is fetched ahead, the claim still runs.
    recorded, none, claimed = rt.store.finish(
        ids[2], claimed[1], 'w1', 't1', 'sent', ATTEMPT, then_fetch=['mailers'], fetch_min=1,
        then_claim=fetched)
    assert none is None and task_mail_id(claimed[1]) == ids[3]
    assert not redis_client.exists('mailq:ahead:w1')
    assert redis_client.lrange('mailq:q:mailers', 0, -1) != []


def claimed_with_one_ahead(rt):
    """Three mails; the first sent by thread t1 of w1, whose outcome fetched the second;
    that one claimed, fetching the third ahead. Returns (ids, claimed item, ahead)."""
    ids = [send(rt) for _ in range(3)]
    _, task, _ = take(rt, 'w1')
    _, upcoming = rt.store.finish(ids[0], task, 'w1', 't1', 'sent', ATTEMPT,
                                  then_fetch=['mailers'])
    item, ahead = rt.store.claim_fetching_ahead('w1', *upcoming, 't1', ['mailers'], 0)
    return ids, item, ahead


def test_a_task_fetched_ahead_is_no_orphan_until_the_thread_lets_go(rt, redis_client):
    ids, item, ahead = claimed_with_one_ahead(rt)
    # The thread delivers ids[1] for longer than two sweeps: ids[2] stays with it.
    suspects = release_orphans(rt.store, 'w1', release_orphans(rt.store, 'w1', set()))
    assert suspects == set() and redis_client.llen('mailq:inflight:w1') == 2
    # The reply was lost: the thread's next fetch drops its busy entry and replaces its
    # note, and both tasks it forgot go back after two sweeps, as any orphan.
    assert take(rt, 'w1') is None
    suspects = release_orphans(rt.store, 'w1', release_orphans(rt.store, 'w1', set()))
    assert sorted(redis_client.lrange('mailq:q:mailers', 0, -1)) == sorted([item[1], ahead[1]])
    assert [rt.store.status(i) for i in ids] == ['sent', 'queued', 'queued']


def test_a_claim_sent_with_an_outcome_meets_a_stale_task(rt, redis_client):
    ids, item, ahead = claimed_with_one_ahead(rt)
    assert rt.store.cancel(ids[2]) == 'ok'
    recorded, fetched, claimed = rt.store.finish(
        ids[1], item[1], 'w1', 't1', 'sent', ATTEMPT, then_fetch=['mailers'], fetch_min=0,
        then_claim=ahead)
    assert recorded == 1 and fetched is None and claimed is None
    assert redis_client.llen('mailq:inflight:w1') == 0
    assert not redis_client.exists('mailq:ahead:w1', 'mailq:busy:w1')


def test_a_quiet_worker_gives_back_the_mail_claimed_with_an_outcome(rt, redis_client):
    from mailq.fetch import MailStorage
    storage = MailStorage(rt.store, rt.pool, [('mailers', 0)], read_timeout=0.01)
    storage.bind_worker('w1')
    storage.ahead_min = 0
    ids, item, ahead = claimed_with_one_ahead(rt)
    storage.keep(ahead, item)
    storage.quiet.set()
    assert storage.dequeue() is None
    assert redis_client.llen('mailq:inflight:w1') == 0
    assert sorted(redis_client.lrange('mailq:q:mailers', 0, -1)) == sorted([item[1], ahead[1]])
    assert [redis_client.hmget(f'mailq:m:{i}', 'status', 'attempts') for i in ids[1:]] == \
        [[b'queued', b'0'], [b'queued', b'0']]


def test_a_delivery_thread_keeps_one_connection(rt, redis_client, monkeypatch):
    """fetch, claim and finish run on a connection the thread keeps (no pool checkout a
    call); one dropped under it (a Redis restart, a failover) is connected again."""
    checkouts = []
    original = rt.pool.get_connection
    monkeypatch.setattr(rt.pool, 'get_connection',
                        lambda *a, **kw: checkouts.append(1) or original(*a, **kw))
    ids = [send(rt) for _ in range(3)]
    checkouts.clear()
    for mail_id in ids:
        _, task, _ = take(rt, 'w1')
        rt.store.finish(mail_id, task, 'w1', 't1', 'sent', ATTEMPT)
        redis_client.client_kill_filter(_type='normal', skipme=True)   # every other client
    assert len(checkouts) <= 1
    assert [rt.store.status(i) for i in ids] == ['sent'] * 3


def test_an_outcome_and_its_claim_after_redis_lost_its_scripts(rt, redis_client):
    """NOSCRIPT: the script answered so, and every call after it, run again once loaded.
    Here the claim was still loaded (another thread had used it) and ran before the
    finish that clears the thread's busy entry: it runs again after it, so the thread
    keeps its busy entry (its attempt is counted twice, the price of this rare case)."""
    ids, item, ahead = claimed_with_one_ahead(rt)
    redis_client.script_flush()
    redis_client.script_load(rt.store.scripts.claim.script)
    recorded, fetched, claimed = rt.store.finish(
        ids[1], item[1], 'w1', 't1', 'sent', ATTEMPT, then_fetch=['mailers'], fetch_min=0,
        then_claim=ahead)
    assert recorded == 1 and fetched is None and claimed[1] == ahead[1]
    assert rt.store.status(ids[1]) == 'sent' and rt.store.status(ids[2]) == 'sending'
    assert json.loads(redis_client.hget('mailq:busy:w1', 't1'))['id'] == ids[2]
    assert redis_client.hget(f'mailq:m:{ids[2]}', 'attempts') == b'2'
    redis_client.script_flush()          # neither loaded: each runs once
    _, task, _ = claimed
    assert rt.store.finish(ids[2], task, 'w1', 't1', 'sent', ATTEMPT)[0] == 1
    assert not redis_client.exists('mailq:busy:w1', 'mailq:inflight:w1')
