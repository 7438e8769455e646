"""Dashboard and API reads with many mails in every state, timed over HTTP against
`mailq.py web`. Pages that do not answer 200 are reported as missing."""
import statistics

from . import mails
from .httpload import get

PAGES = ('/api/stats', '/', '/queues', '/queues/mailers', '/scheduled', '/retrying', '/dead',
         '/busy', '/cron', '/outbox',
         '/dead?q=no+such+user',                # a filter: scans the whole set in Redis
         '/queues/mailers?q=nobody')


def fill(rt, per_state):
    """per_state mails in each of queued, scheduled, retrying and dead."""
    names = rt.config.worker.queue_names
    mails.fill_queued(rt, per_state, queues=names)
    mails.fill_queued(rt, per_state, send_at=4102444800.0)   # 2100-01-01
    mails.fill_finished(rt, per_state, 'retrying')
    mails.fill_finished(rt, per_state, 'dead')


def time_pages(env, repeat=5):
    measured, missing = {}, {}
    for path in PAGES:
        _, status, _ = get(env.web_port, path)                   # warm up
        if status != 200:
            missing[path] = status
            continue
        times = [get(env.web_port, path)[0] for _ in range(repeat)]
        measured[path] = {'median_ms': round(statistics.median(times) * 1000, 1),
                          'max_ms': round(max(times) * 1000, 1)}
    return measured, missing
