"""`worker -k process`: one thread-mode worker per core under a supervising parent."""
import collections
import os
import signal
import time

from support.mailq_app import WebApp, start_worker, stop_process
from support.procs import REPO_ROOT, read_log

from mailq.swarm import shares


def in_flight(redis_client):
    return sum(redis_client.llen(k) for k in redis_client.scan_iter('mailq:inflight:*'))


def children(redis_client):
    """{worker id: its w:<id> hash} of the workers that beat."""
    return {wid.decode(): redis_client.hgetall(f'mailq:w:{wid.decode()}')
            for wid in redis_client.zrange('mailq:workers', 0, -1)}


def wait_until(check, timeout=20, what='condition'):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


def parent_pid(pid):
    with open(f'/proc/{pid}/stat') as fh:
        return int(fh.read().rpartition(')')[2].split()[1])


def test_shares_split_threads_over_processes():
    assert shares(4, 2) == [2, 2]
    assert shares(25, 2) == [13, 12]
    assert shares(3, 8) == [1, 1, 1]
    assert shares(5, 1) == [5]


def test_process_swarm_delivers_restarts_and_stops(tmp_ini, redis_url, redis_client,
                                                   smtp_server):
    ini = tmp_ini(redis={'url': redis_url},
                  worker={'heartbeat_timeout': '3'},
                  smtp={'transport': 'smtp', 'port': str(smtp_server.port), 'timeout': '5'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    expected = shares(4, os.cpu_count() or 1)          # [2, 2] on a 2-core box
    web = WebApp(ini)
    proc = start_worker(ini, '-k', 'process', '-w', '4')
    try:
        wait_until(lambda: len(children(redis_client)) == len(expected), what='children')
        first = children(redis_client)
        pids = {int(info[b'pid']) for info in first.values()}
        assert sorted((int(i[b'concurrency']) for i in first.values()), reverse=True) == expected
        assert len(pids) == len(expected) and proc.pid not in pids
        assert {parent_pid(pid) for pid in pids} == {proc.pid}
        assert {i[b'worker_type'] for i in first.values()} == {b'thread'}

        smtp_server.delay_data(0.05)        # keep transactions in flight for the kill
        batch = [{'to': f'user{i}@example.com', 'subject': f'mail {i}', 'text': 'x'}
                 for i in range(200)]
        ids = web.post('/api/mails/batch', {'mails': batch})[2]['ids']
        wait_until(lambda: len(smtp_server.messages) >= 20, what='first deliveries')
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: any(int(i[b'pid']) not in pids for i in children(redis_client).values()),
                   what='a restarted child')
        smtp_server.wait_for(200, timeout=60)
        wait_until(lambda: not in_flight(redis_client)
                   and not redis_client.llen('mailq:q:mailers'), what='empty queues')
        assert proc.poll() is None
    finally:
        code = stop_process(proc)
        web.close()

    assert code == 0, read_log(proc)
    log = read_log(proc)
    assert f'(pid {victim}) died (signal 9); restarting' in log
    assert in_flight(redis_client) == 0
    live = [pid for pid in pids | {int(i[b'pid']) for i in children(redis_client).values()}
            if os.path.exists(f'/proc/{pid}') and _state(pid) != 'Z']
    assert live == []
    delivered = {m.message_id for m in smtp_server.messages}
    records = [redis_client.hgetall(f'mailq:m:{i}') for i in ids]
    assert {r[b'message_id'].decode() for r in records} <= delivered    # every mail arrived
    assert collections.Counter(r[b'status'] for r in records) == {b'sent': 200}


def test_sigterm_lets_children_finish_in_flight_mails(tmp_ini, redis_url, redis_client,
                                                      smtp_server):
    ini = tmp_ini(redis={'url': redis_url},
                  smtp={'transport': 'smtp', 'port': str(smtp_server.port), 'timeout': '5'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    web = WebApp(ini)
    proc = start_worker(ini, '-k', 'process', '-w', '4')
    try:
        wait_until(lambda: len(children(redis_client)) == len(shares(4, os.cpu_count() or 1)),
                   what='children')
        smtp_server.delay_data(1.0)         # each transaction takes a second
        ids = web.post('/api/mails/batch', {'mails': [
            {'to': f'u{i}@example.com', 'subject': 's', 'text': 'x'} for i in range(4)]})[2]['ids']
        wait_until(lambda: in_flight(redis_client) == 4, what='four mails in flight')
    finally:
        code = stop_process(proc)           # SIGTERM to the group: forwarded once
        web.close()
    assert code == 0, read_log(proc)
    assert len(smtp_server.messages) == 4       # finished, not returned half-sent
    statuses = [redis_client.hget(f'mailq:m:{i}', 'status') for i in ids]
    assert statuses == [b'sent'] * 4
    assert in_flight(redis_client) == 0
    log = read_log(proc)                        # each child hands back none, and says so
    assert log.count('returned 0 unfinished mail(s)') == len(shares(4, os.cpu_count() or 1))
    assert 'unfinished mail(s)' not in log.replace('returned 0 unfinished mail(s)', '')


def _state(pid):
    try:
        with open(f'/proc/{pid}/stat') as fh:
            return fh.read().rpartition(')')[2].split()[0]
    except OSError:
        return 'Z'
