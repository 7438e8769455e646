"""The done-when check: an every-minute job with three real worker processes on one
Redis delivers one mail per fire time through a real SMTP server.

The default test waits for one minute boundary (at most ~65 s). Set
MAILQ_TEST_CRON_MINUTES=N to watch N boundaries instead (the measurement of the report).
"""
import json
import os
import time


from cron_fixtures.helpers import cron_ini, tick_job
from support.mailq_app import run_cli, start_worker
from support.procs import read_log, stop_process

MINUTES = int(os.environ.get('MAILQ_TEST_CRON_MINUTES', '1'))


def test_three_workers_send_one_mail_per_minute(tmp_path, redis_url, redis_client,
                                                smtp_server, artifacts):
    ini = cron_ini(tmp_path, redis_url, {'tick': tick_job()}, smtp_port=smtp_server.port)
    # Pretend the job was first seen 2.5 minutes ago while no worker ran: the three
    # workers race to catch up the 2 or 3 fire times since, then share the live ones.
    since = time.time() - 150
    redis_client.hset('mailq:cron:tick', 'since', since)
    workers = [start_worker(ini, '-w', '2') for _ in range(3)]
    try:
        last = (int(time.time()) // 60 + MINUTES) * 60       # the last boundary we wait for
        expected = [t for t in range(int(since) // 60 * 60 + 60, last + 1, 60)]
        time.sleep(max(0, last - time.time()))
        messages = smtp_server.wait_for(len(expected), timeout=20)
        time.sleep(3)                                         # room for a duplicate to show up
        subjects = sorted(m.data.split(b'Subject: ', 1)[1].split(b'\r\n', 1)[0].decode()
                          for m in smtp_server.messages)
        assert subjects == [f'tick {time.strftime("%Y-%m-%dT%H:%M:00+00:00", time.gmtime(t))}'
                            for t in expected]
        assert all(m.rcpt_tos == ['ops@example.com'] for m in messages)
        runs = [json.loads(r) for r in redis_client.lrange('mailq:cron:tick:runs', 0, -1)]
        assert sorted(r['fire_time'] for r in runs) == expected
        assert all(r['outcome'] == 'ok' for r in runs)
        _report(artifacts, runs, smtp_server.messages)
        ids = {w.decode() for w in redis_client.zrange('mailq:workers', 0, -1)}
        assert len(ids) == 3 and {r['worker'] for r in runs} <= ids
        listing = run_cli(ini, 'cron').stdout.splitlines()[1]
        last_text = time.strftime('%Y-%m-%d %H:%M:00 UTC ok (1 mail)', time.gmtime(last))
        next_text = time.strftime('%Y-%m-%d %H:%M:00 UTC', time.gmtime(last + 60))
        assert last_text in listing and listing.endswith(next_text), listing
    finally:
        for worker in workers:
            assert stop_process(worker) == 0, read_log(worker)
    for worker in workers:
        assert 'Traceback' not in read_log(worker), read_log(worker)


def _report(artifacts, runs, messages):
    """tests/artifacts/cron_workers.json: who ran each fire time, and how late it arrived."""
    received = {m.data.split(b'Subject: tick ', 1)[1][:25].decode(): m.received_at
                for m in messages}
    rows = [{'fire_time': r['fire_time'], 'worker': r['worker'],
             'enqueued_late_s': round(r['enqueued_at'] - r['fire_time'], 3),
             'received_late_s': round(received[time.strftime(
                 '%Y-%m-%dT%H:%M:00+00:00', time.gmtime(r['fire_time']))] - r['fire_time'], 3)}
            for r in sorted(runs, key=lambda r: r['fire_time'])]
    (artifacts / 'cron_workers.json').write_text(json.dumps(rows, indent=2))
