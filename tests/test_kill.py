"""kill -9 a worker while it sends: every accepted mail is still delivered.

A duplicate is allowed only for a mail whose SMTP transaction was in flight at
the moment of a kill; we count the worker's in-flight list right before each
kill as the upper bound.
"""
import collections
import os
import random
import signal
import time

from support.mailq_app import WebApp, start_worker, stop_process
from support.procs import REPO_ROOT

MAILS = 300
KILLS = 3


def in_flight(redis_client):
    return sum(redis_client.llen(k) for k in redis_client.scan_iter('mailq:inflight:*'))


def test_kill_9_loses_no_mail(tmp_ini, redis_url, redis_client, smtp_server):
    ini = tmp_ini(redis={'url': redis_url},
                  worker={'heartbeat_timeout': '3'},
                  smtp={'transport': 'smtp', 'port': str(smtp_server.port), 'timeout': '5'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    smtp_server.delay_data(0.05)          # keep transactions in flight when we kill
    web = WebApp(ini)
    batch = [{'to': f'user{i}@example.com', 'subject': f'mail {i}', 'text': 'x'}
             for i in range(MAILS)]
    ids = web.post('/api/mails/batch', {'mails': batch})[2]['ids']
    message_ids = {web.get(f'/api/mails/{i}')[2]['message_id'] for i in ids}
    rng = random.Random(7)
    bound = 0
    proc = start_worker(ini, '-w', '25')
    try:
        for _ in range(KILLS):
            before = len(smtp_server.messages)
            deadline = time.monotonic() + 20
            while len(smtp_server.messages) < before + rng.randint(10, 40):
                assert time.monotonic() < deadline, 'worker made no progress'
                time.sleep(0.01)
            bound += in_flight(redis_client)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc = start_worker(ini, '-w', '25')
        received = smtp_server.wait_for(MAILS, timeout=60)
        deadline = time.monotonic() + 20
        while web.get('/api/stats')[2]['enqueued'] or in_flight(redis_client):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop_process(proc)
        web.close()

    counts = collections.Counter(m.message_id for m in smtp_server.messages)
    assert set(counts) == message_ids                      # every mail delivered
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= bound, (duplicates, bound)
    statuses = collections.Counter(web.runtime.redis.hget(f'mailq:m:{i}', 'status') for i in ids)
    assert statuses == {b'sent': MAILS}                     # nothing stuck in sending
    print(f'\n{MAILS} mails, {KILLS} kills: {len(received)} received, '
          f'{duplicates} duplicates (bound {bound})')
