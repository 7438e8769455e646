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

from .redisconn import is_outage
from .store import DURATION_BUCKETS


class ClusterCollector:
    """A prometheus_client collector over mailq's Redis keys."""

    def __init__(self, rt):
        self.rt = rt

    def collect(self):
        up = GaugeMetricFamily('mailq_redis_up', 'Whether this scrape could read Redis.')
        try:
            snap = snapshot(self.rt)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(snap)


def snapshot(rt, now=None):
    """Everything /metrics shows, as plain data."""
    store = rt.store
    now = now or time.time()
    totals = store.stats.totals()
    beats = store.workers.beats()
    slots = store.workers.slots(beats)
    queues = _queue_names(rt.config.worker.queue_names, [queues for _, queues, _ in slots],
                          totals['paused'])
    latencies = store.queue_latencies(queues, now)
    alive = [now - beat <= rt.config.worker.heartbeat_timeout for _, beat in beats]
    busy = [count for _, _, count in slots]
    return {
        'processed': totals['processed'], 'failed': totals['failed'],
        'deliveries': totals['deliveries'], 'duration': totals['duration'],
        'queues': {q: {'size': latencies[q][0], 'latency': latencies[q][1],
                       'paused': q in totals['paused']} for q in queues},
        'states': {'queued': sum(size for size, _ in latencies.values()),
                   'scheduled': totals['scheduled'], 'sending': sum(busy),
                   'retrying': totals['retrying'], 'dead': totals['dead']},
        'outbox': totals['outbox'],
        'workers': sum(alive),
        'threads': sum(int(concurrency or 0) for (concurrency, _, _), ok in zip(slots, alive)
                       if ok),
        'busy': sum(busy),
        'cron': _cron(rt),
        'submissions': totals['submissions'],
        # the limiters' state (store/limits.py), only when a limit is configured
        'limits': store.throttle.view(now) if store.throttle.on else None,
    }


def _cron(rt):
    """{job: (last success epoch or 0, paused)} from the kept run history of each job."""
    names = [job.name for job in rt.config.cron_jobs]
    if not names:
        return {}
    paused, histories = rt.store.cron.all_runs(names)
    found = {}
    for name in names:
        last = next((run.get('enqueued_at') for run in histories[name]
                     if run.get('outcome') == 'ok'), 0)
        found[name] = (float(last or 0), name in paused)
    return found


def _queue_names(configured, worker_queue_lists, paused):
    """The configured queues plus any a worker serves or someone paused, in that order."""
    names = list(configured)
    for raw in worker_queue_lists:
        try:
            names += [q[0] if isinstance(q, list) else q for q in json.loads(raw or b'[]')]
        except (ValueError, TypeError, IndexError):
            continue
    names += sorted(paused)
    return list(dict.fromkeys(names))


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

    if snap.get('limits'):
        yield from _limit_families(snap['limits'])

    success = GaugeMetricFamily('mailq_cron_last_success_timestamp_seconds',
                                'When a cron job last enqueued its mails (0: not in its '
                                'kept history).', labels=['job'])
    cron_paused = GaugeMetricFamily('mailq_cron_paused', '1 when a cron job is paused.',
                                    labels=['job'])
    for job, (last, is_paused) in snap['cron'].items():
        success.add_metric([job], last)
        cron_paused.add_metric([job], int(is_paused))
    yield from (success, cron_paused)
    yield _submissions(snap['submissions'])


def _submissions(counts):
    """SMTP submission outcomes ('accepted:2xx', 'refused:5xx'...), as the listeners
    added them to Redis (about once a second)."""
    family = CounterMetricFamily('mailq_submissions', 'SMTP submissions by result and '
                                 'reply class (refusals at MAIL, RCPT and DATA).',
                                 labels=['result', 'code_class'])
    for key in ('accepted:2xx', 'refused:4xx', 'refused:5xx'):
        family.add_metric(key.split(':'), counts.get(key, 0))
    return family


def _limit_families(view):
    yield _gauge('mailq_held_mails', 'Mails held for a limiter (no attempt used).',
                 view['held'])
    gauges = {
        'rate': ('mailq_limiter_rate', 'Configured messages per second of a limiter.'),
        'current_rate': ('mailq_limiter_current_rate',
                         'Messages per second a limiter allows now (after throttling cuts).'),
        'tokens': ('mailq_limiter_tokens', 'Tokens in a limiter\'s bucket now.'),
        'slots_used': ('mailq_limiter_slots_used',
                       'Slots in use: sessions (the relay) or mails in flight (a group).'),
        'quota_used': ('mailq_limiter_quota_used', 'Mails sent in the last 24 h.'),
        'held': ('mailq_limiter_held', 'Held mails waiting for this limiter (a sample).'),
    }
    for field, (name, doc) in gauges.items():
        family = GaugeMetricFamily(name, doc, labels=['limiter'])
        for row in view['limiters']:
            if row[field] is not None:
                family.add_metric([row['name']], row[field])
        yield family


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
