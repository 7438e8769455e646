"""Fault 2: Redis (appendonly yes, appendfsync always) is kill -9ed and restarted
while web and worker run. Every mail answered 202 must be delivered."""
import collections
import re
import threading
import time

from rig import FULL, record, wait_until

OUTAGES = 3 if FULL else 1
DOWN_SECONDS = 2.0


class Poster(threading.Thread):
    """Posts mails one after another and keeps the answers."""

    def __init__(self, rig):
        super().__init__(daemon=True)
        self.rig, self.stopping, self.answers = rig, threading.Event(), []

    def run(self):
        n = 0
        while not self.stopping.is_set():
            n += 1
            body = {'to': f'r{n}@example.com', 'subject': f'redis fault {n}', 'text': 'x'}
            try:
                status, answer = self.rig.post(body, timeout=15)
            except OSError as exc:     # no answer at all: the mail counts as not accepted
                status, answer = None, {'error': repr(exc)}
            self.answers.append((time.monotonic(), status, answer))
            time.sleep(0.01)

    def accepted(self):
        return [a['id'] for _, status, a in self.answers if status == 202]


def test_redis_kill9_and_restart_loses_no_accepted_mail(make_rig, smtp, aof_redis):
    rig = make_rig()
    smtp.delay_data(0.05)
    rig.web()
    worker = rig.worker('-w', '25')
    rig.worker_id(worker)
    poster = Poster(rig)
    poster.start()
    recoveries = []
    for _ in range(OUTAGES):
        wait_until(lambda: len(poster.accepted()) >= 50, 30, '50 accepted mails')
        aof_redis.kill()
        down_at = time.monotonic()
        wait_until(lambda: any(s == 503 for t, s, _ in poster.answers if t > down_at), 20,
                   'a 503 while Redis is down')
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        aof_redis.start()
        up_at = time.monotonic()
        wait_until(lambda: any(s == 202 for t, s, _ in poster.answers if t > up_at), 30,
                   'a 202 after Redis is back')
        recoveries.append(time.monotonic() - up_at)
    time.sleep(0.5)
    poster.stopping.set()
    poster.join(20)

    statuses = {s for _, s, _ in poster.answers}
    assert statuses <= {202, 503}, statuses
    for _, status, answer in poster.answers:
        if status == 503:
            assert 'Redis unreachable' in answer['error']
    ids = poster.accepted()
    message_ids = rig.message_ids(ids)
    assert None not in message_ids.values(), 'a 202-accepted mail has no record'
    wait_until(lambda: rig.all_delivered(message_ids.values()), 60, 'accepted mails delivered',
               detail=lambda: (rig.statuses(ids), rig.stuck(ids), rig.log(worker)[-3000:]))
    wait_until(lambda: rig.statuses(ids) == {'sent': len(ids)}, 30, 'records to say sent',
               detail=lambda: (rig.statuses(ids), rig.log(worker)[-3000:]))
    figures = rig.tally(ids, message_ids)
    assert figures['lost'] == 0
    assert worker.poll() is None, 'the worker must survive the outage'

    log = rig.log(worker)
    # One line per outage from each loop (fetch, heartbeat) and per held mail; never per poll.
    outage_lines = collections.Counter(
        re.sub(r'\(.*?\)', '', line.split(': ', 1)[1])
        for line in log.splitlines() if 'Redis unreachable' in line)
    assert outage_lines and max(outage_lines.values()) <= OUTAGES, outage_lines
    assert 'Redis is reachable again' in log
    assert 'Traceback' not in log
    rig.stop_all()
    assert rig.leftover_keys() == []
    record('Redis kill -9 + restart (web and worker running)', outages=OUTAGES,
           answers_503=sum(1 for _, s, _ in poster.answers if s == 503),
           recover_s=round(max(recoveries), 2), **figures)
