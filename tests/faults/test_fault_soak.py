"""Fault 6: soak. Steady load while the worker and Redis are killed at random; at
the end every accepted mail is delivered, nothing leaked (in-flight lists, busy
hashes, heartbeats) and the worker's memory is flat once the kills stop.

MAILQ_SOAK_SECONDS sets the length (60 by default, as in CI; 1800 for the real soak)."""
import os
import random
import threading
import time

from rig import PREFIX, record, wait_until

SECONDS = float(os.environ.get('MAILQ_SOAK_SECONDS', '60'))
CALM = 0.3               # last part of the run: load without kills, to measure drift
LEAKY = ('inflight:*', 'busy:*', 'w:*', 'cmd:*')


class Feeder(threading.Thread):
    """Accepts a small batch every 0.25 s, through the same service as the API."""

    def __init__(self, rig):
        super().__init__(daemon=True)
        self.rig, self.stopping, self.accepted, self.refused = rig, threading.Event(), [], 0

    def run(self):
        from mailq import config as config_module, service
        from mailq.errors import Unavailable
        from mailq.runtime import Runtime
        rt = Runtime(config_module.load(str(self.rig.ini)))
        n = 0
        while not self.stopping.wait(0.25):
            items = [{'to': f's{n + i}@example.com', 'subject': f'soak {n + i}', 'text': 'x'}
                     for i in range(10)]
            n += 10
            try:
                self.accepted += [m['id'] for m in service.send_batch(rt, items)]
            except Unavailable:
                self.refused += len(items)


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith('VmRSS:'))


INDEXES = (b'ix:rcpt:', b'ix:msgid:', b'ix:idem:')     # search index zsets, a key a value
BUCKETS = b'ixb:'      # search index buckets: at most len(KINDS) * sum(LEVELS) keys


def key_counts(rig):
    """(keys that are not a mail's own, search index zsets, mail records). The first must
    not grow with the number of mails (bucket keys are bounded: counted apart, in
    neither); index zsets leave with their records."""
    other = index = records = 0
    for key in rig.client.scan_iter(PREFIX + '*', count=1000):
        name = key[len(PREFIX):]
        if name.startswith(BUCKETS):
            continue
        if name.startswith(INDEXES):
            index += 1
        elif name.startswith(b'm:'):
            records += name.count(b':') == 1
        else:
            other += 1
    return other, index, records


def test_soak_with_random_kills(make_rig, smtp, aof_redis):
    rig = make_rig()
    smtp.delay_data(0.02)
    rng = random.Random(6)
    worker = rig.worker('-w', '25')
    rig.worker_id(worker)
    feeder = Feeder(rig)
    feeder.start()
    started = time.monotonic()
    chaos_until = started + SECONDS * (1 - CALM)
    kills = {'worker': 0, 'redis': 0}
    in_flight_at_kills = 0
    while time.monotonic() < chaos_until:
        time.sleep(rng.uniform(3, 8))
        if rng.random() < 0.5:
            wid = rig.worker_id(worker)
            rig.kill9(worker)
            in_flight_at_kills += rig.busy(wid)
            worker = rig.worker('-w', '25')
            kills['worker'] += 1
        else:
            aof_redis.kill()
            time.sleep(rng.uniform(0.5, 2))
            aof_redis.start()
            kills['redis'] += 1
    rig.worker_id(worker)
    calm_start = time.monotonic()
    time.sleep(min(5.0, SECONDS * CALM / 3))         # let it settle after the last kill
    rss_first, (keys_first, _, _) = rss_kib(worker.pid), key_counts(rig)
    time.sleep(max(0.0, started + SECONDS - time.monotonic()))
    rss_last, (keys_last, index_keys, records) = rss_kib(worker.pid), key_counts(rig)
    feeder.stopping.set()
    feeder.join(30)

    ids = feeder.accepted
    message_ids = rig.message_ids(ids)
    assert None not in message_ids.values(), 'an accepted mail has no record'
    wait_until(lambda: rig.all_delivered(message_ids.values()), 120, 'all accepted delivered',
               detail=lambda: rig.tally(ids, message_ids))
    wait_until(lambda: rig.statuses(ids) == {'sent': len(ids)}, 60, 'records to say sent',
               detail=lambda: rig.statuses(ids))
    figures = rig.tally(ids, message_ids)
    assert figures['lost'] == 0
    assert figures['duplicates'] <= in_flight_at_kills
    assert keys_last <= keys_first + 5, (keys_first, keys_last)
    # every mail here has its own recipient and Message-ID, and no idempotency key: its
    # entries are bucket fields, and a zset only for a value seen twice
    assert index_keys <= 2 * records, (index_keys, records)
    # Generous bound: a leak of per-mail state over the calm phase's thousands of mails
    # would show as tens of MiB; allocator noise stays far below.
    assert rss_last - rss_first < 16 * 1024, (rss_first, rss_last)

    rig.stop_all()
    leaked = [k for p in LEAKY for k in rig.client.scan_iter(PREFIX + p)]
    assert leaked == [] and rig.client.zcard(PREFIX + 'workers') == 0
    record(f'soak {int(SECONDS)} s (random kill -9 of worker and Redis)',
           worker_kills=kills['worker'], redis_kills=kills['redis'],
           refused_while_down=feeder.refused, in_flight_at_kills=in_flight_at_kills,
           rss_kib=[rss_first, rss_last], other_keys=[keys_first, keys_last],
           calm_s=round(time.monotonic() - calm_start, 1), recover_s=None, **figures)
