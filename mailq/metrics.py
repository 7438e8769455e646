"""Prometheus metrics of the whole cluster, read from Redis at scrape time.

Workers keep nothing in memory for metrics: every worker records its outcomes
in Redis (finish.lua counts deliveries and durations), so one scrape of any
web instance shows every worker, queue and mail. Reading is a few pipelined
round trips; nothing is written.
"""
import json
import time

import redis
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily)
from prometheus_client.utils import floatToGoString

from .cron.state import state_for
from .store import DURATION_BUCKETS

REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)


class ClusterCollector:
    """A prometheus_client collector over mailq's Redis keys."""

    def __init__(self, rt):
        self.rt = rt

    def collect(self):
        up = GaugeMetricFamily('mailq_redis_up', 'Whether this scrape could read Redis.')
        try:
            snap = snapshot(self.rt)
        except REDIS_DOWN:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(snap)


def snapshot(rt, now=None):
    """Everything /metrics shows, as plain data."""
    keys, client = rt.keys, rt.redis
    now = now or time.time()
    pipe = client.pipeline(transaction=False)
    for name in ('processed', 'failed'):
        pipe.get(keys.stat(name))
    for name in ('deliveries', 'duration'):
        pipe.hgetall(keys.stat(name))
    for name in ('schedule', 'retry', 'dead', 'outbox'):
        pipe.zcard(getattr(keys, name))
    pipe.smembers(keys.paused)
    pipe.zrange(keys.workers, 0, -1, withscores=True)
    processed, failed, deliveries, duration, scheduled, retrying, dead, outbox, paused, \
        beats = pipe.execute()

    workers = [(wid.decode(), beat) for wid, beat in beats]
    pipe = client.pipeline(transaction=False)
    for wid, _ in workers:
        pipe.hmget(keys.worker(wid), 'concurrency', 'queues')
        pipe.hlen(keys.busy(wid))
    replies = pipe.execute()
    infos, busy = replies[0::2], replies[1::2]

    queues = _queue_names(rt.config.worker.queue_names, [info[1] for info in infos],
                          paused)
    sizes, oldest = _queue_heads(client, keys, queues)
    alive = [now - beat <= rt.config.worker.heartbeat_timeout for _, beat in workers]
    return {
        'processed': int(processed or 0), 'failed': int(failed or 0),
        'deliveries': {k.decode(): int(v) for k, v in deliveries.items()},
        'duration': {k.decode(): float(v) for k, v in duration.items()},
        'queues': {q: {'size': sizes[q], 'latency': _latency(oldest.get(q), now),
                       'paused': q.encode() in paused} for q in queues},
        'states': {'queued': sum(sizes.values()), 'scheduled': scheduled,
                   'sending': sum(busy), 'retrying': retrying, 'dead': dead},
        'outbox': outbox,
        'workers': sum(alive),
        'threads': sum(int(info[0] or 0) for info, ok in zip(infos, alive) if ok),
        'busy': sum(busy),
        'cron': _cron(rt),
    }


def _cron(rt):
    """{job: (last success epoch or 0, paused)} from the kept run history of each job."""
    names = [job.name for job in rt.config.cron_jobs]
    if not names:
        return {}
    state = state_for(rt)
    pipe = rt.redis.pipeline(transaction=False)
    pipe.smembers(state.paused_key)
    for name in names:
        pipe.lrange(state.key(name, 'runs'), 0, -1)       # newest first
    paused, *histories = pipe.execute()
    found = {}
    for name, runs in zip(names, histories):
        ok = (json.loads(run) for run in runs)
        last = next((run.get('enqueued_at') for run in ok if run.get('outcome') == 'ok'), 0)
        found[name] = (float(last or 0), name.encode() in paused)
    return found


def _queue_names(configured, worker_queue_lists, paused):
    """The configured queues plus any a worker serves or someone paused, in that order."""
    names = list(configured)
    for raw in worker_queue_lists:
        try:
            names += [q[0] if isinstance(q, list) else q for q in json.loads(raw or b'[]')]
        except (ValueError, TypeError, IndexError):
            continue
    names += sorted(p.decode() for p in paused)
    return list(dict.fromkeys(names))


def _queue_heads(client, keys, queues):
    """Sizes, and for each non-empty queue the record times of its oldest mail."""
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.llen(keys.queue(q))
        pipe.lindex(keys.queue(q), -1)     # workers pop RIGHT: the oldest is last
    replies = pipe.execute()
    sizes = dict(zip(queues, replies[0::2]))
    heads = {q: _mail_id(task) for q, task in zip(queues, replies[1::2]) if task}
    pipe = client.pipeline(transaction=False)
    for mail_id in heads.values():
        pipe.hmget(keys.record(mail_id), 'created_at', 'send_at', 'next_at')
    return sizes, dict(zip(heads, pipe.execute()))


def _mail_id(task):
    try:
        return json.loads(task)['args'][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return ''


def _latency(times, now):
    """Seconds the oldest queued mail has waited since it became due (as Sidekiq's)."""
    if not times:
        return 0.0
    due = max((float(t) for t in times if t), default=now)
    return max(0.0, now - due)


def families(snap):
    yield _counter('mailq_processed', 'Delivery attempts recorded.', snap['processed'])
    yield _counter('mailq_failed', 'Delivery attempts that did not send.', snap['failed'])

    deliveries = CounterMetricFamily(
        'mailq_deliveries', 'Delivery attempts by outcome and SMTP reply code class.',
        labels=['outcome', 'code_class'])
    for field, count in sorted(snap['deliveries'].items()):
        outcome, _, code_class = field.partition(':')
        deliveries.add_metric([outcome, code_class], count)
    yield deliveries
    yield _histogram(snap['duration'])

    size = GaugeMetricFamily('mailq_queue_size', 'Mails waiting in a queue.', labels=['queue'])
    latency = GaugeMetricFamily('mailq_queue_latency_seconds',
                                'How long the oldest mail of a queue has waited.',
                                labels=['queue'])
    paused = GaugeMetricFamily('mailq_queue_paused', '1 when a queue is paused.',
                               labels=['queue'])
    for name, queue in snap['queues'].items():
        size.add_metric([name], queue['size'])
        latency.add_metric([name], queue['latency'])
        paused.add_metric([name], int(queue['paused']))
    yield from (size, latency, paused)

    states = GaugeMetricFamily('mailq_mails', 'Mails per state (sent and cancelled are not '
                               'kept counted; see mailq_deliveries_total).', labels=['state'])
    for state, count in snap['states'].items():
        states.add_metric([state], count)
    yield states
    yield _gauge('mailq_outbox_mails', 'Mails kept in the outbox (transport = outbox).',
                 snap['outbox'])
    yield _gauge('mailq_workers', 'Worker processes with a recent heartbeat.', snap['workers'])
    yield _gauge('mailq_worker_threads', 'Delivery slots of the live worker processes.',
                 snap['threads'])
    yield _gauge('mailq_busy_workers', 'Delivery slots sending a mail right now.', snap['busy'])

    success = GaugeMetricFamily('mailq_cron_last_success_timestamp_seconds',
                                'When a cron job last enqueued its mails (0: not in its '
                                'kept history).', labels=['job'])
    cron_paused = GaugeMetricFamily('mailq_cron_paused', '1 when a cron job is paused.',
                                    labels=['job'])
    for job, (last, is_paused) in snap['cron'].items():
        success.add_metric([job], last)
        cron_paused.add_metric([job], int(is_paused))
    yield from (success, cron_paused)


def _counter(name, doc, value):
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _gauge(name, doc, value):
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _histogram(fields):
    """finish.lua counts each bucket on its own; Prometheus wants running totals."""
    buckets, total = [], 0
    for bound in DURATION_BUCKETS:
        total += int(fields.get(str(bound), 0))
        buckets.append((floatToGoString(bound), total))
    total += int(fields.get('+Inf', 0))
    buckets.append(('+Inf', total))
    family = HistogramMetricFamily('mailq_delivery_duration_seconds',
                                   'Time of one delivery attempt (SMTP transaction).')
    family.add_metric([], buckets, sum_value=fields.get('sum', 0.0))
    return family
