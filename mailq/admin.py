"""Listings and actions behind the dashboard and its JSON API.

Pages and API routes call these functions and nothing else, so both always
agree. An unfiltered list reads one page from its Redis list or sorted set and
the list columns of those mails in one pipeline; only a filter scans. Every
state change is one Lua script (lua/admin_*.lua) that keeps record.status,
record.task and the containers consistent; bulk actions call them in chunks
so Redis is never blocked for long.
"""
import email
import email.policy
import functools
import json
import math
import time

from . import service
from .errors import Conflict, NotFound, ValidationError
from .redisconn import persistence_warning
from .service import iso, redis_errors
from .store import _load_script

PAGE_SIZE = 25
MAX_PAGE = 10 ** 9       # (page - 1) * PAGE_SIZE must stay a Redis integer
CHUNK = 1000
LIST_FIELDS = ('id', 'status', 'queue', 'task', 'to', 'subject', 'last_error', 'attempts',
               'created_at', 'send_at', 'next_at', 'finished_at', 'sent_at', 'attachments',
               'from')


class Container:
    """Where mails of one state wait: a queue list or a sorted set."""

    def __init__(self, kind, key, status, members, newest_first, actions):
        self.kind, self.key, self.status = kind, key, status
        self.tasks = members == 'tasks'        # members are Huey tasks, else mail ids
        self.newest_first = newest_first
        self.actions = actions
        self.is_list = kind == 'queue'

    def size(self, client):
        return client.llen(self.key) if self.is_list else client.zcard(self.key)

    def read(self, client, start, stop):
        """[(member, score or None)] at positions start..stop (inclusive), display order."""
        if self.is_list:
            return [(m, None) for m in client.lrange(self.key, start, stop)]
        read = client.zrevrange if self.newest_first else client.zrange
        return read(self.key, start, stop, withscores=True)

    def mail_id(self, member):
        return task_mail_id(member) if self.tasks else member.decode()


def task_mail_id(task):
    """The mail id a Huey task carries, or None for a malformed task."""
    try:
        return json.loads(task)['args'][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def container(rt, kind, queue=None):
    keys = rt.keys
    if kind == 'queue':
        if queue not in queue_names(rt):
            raise NotFound(f'no queue {queue!r}')
        return Container('queue', keys.queue(queue), 'queued', 'tasks', True, ('delete',))
    table = {
        'scheduled': (keys.schedule, 'scheduled', 'tasks', False, ('enqueue', 'delete')),
        'retrying': (keys.retry, 'retrying', 'tasks', False, ('retry', 'kill', 'delete')),
        'dead': (keys.dead, 'dead', 'ids', True, ('retry', 'delete')),
        'outbox': (keys.outbox, 'sent', 'ids', True, ('delete',)),
    }
    if kind not in table:
        raise NotFound(f'no list {kind!r}')
    return Container(kind, *table[kind])


@functools.lru_cache(maxsize=None)
def _script(client, name):
    return _load_script(client, name)


def queue_names(rt):
    return rt.store.known_queues()


# -- listings

def listing(rt, kind, page=1, query='', queue=None):
    """One page of a list: {rows, page, pages, total, query}. Filters on to/subject/error."""
    box = container(rt, kind, queue)
    page = _page_number(page)
    query = (query or '').strip()
    with redis_errors():
        if query:
            total, members = _filtered(rt, box, query, page)
        else:
            total = box.size(rt.redis)
            start = (page - 1) * PAGE_SIZE
            members = box.read(rt.redis, start, start + PAGE_SIZE - 1)
        rows = _rows(rt, box, members)
    return {'kind': kind, 'queue': queue, 'rows': rows, 'page': page, 'total': total,
            'pages': max(1, math.ceil(total / PAGE_SIZE)), 'query': query,
            'page_size': PAGE_SIZE, 'actions': list(box.actions)}


def _page_number(page):
    """A 1-based page; capped, since an index past Redis's 64-bit range is an error there."""
    try:
        page = int(page or 1)
    except (TypeError, ValueError):
        raise ValidationError('page', 'must be a whole number') from None
    if not 1 <= page <= MAX_PAGE:
        raise ValidationError('page', f'must be between 1 and {MAX_PAGE}')
    return page


def _filtered(rt, box, query, page):
    """Match the container chunk by chunk inside Redis (admin_filter.lua); keep the
    matches of the wanted page, count the rest."""
    order = 'list' if box.is_list else ('desc' if box.newest_first else 'asc')
    members = 'tasks' if box.tasks else 'ids'
    needle = _ascii_lower(query)
    first = (page - 1) * PAGE_SIZE
    script = _script(rt.redis, 'admin_filter')
    start, total, wanted = 0, 0, []
    while True:
        scanned, matches, *found = script(keys=[box.key], args=[
            order, members, start, start + CHUNK - 1, needle, rt.keys.record(''),
            max(0, first - total), PAGE_SIZE - len(wanted)])
        if not scanned:
            break
        for member, score in zip(found[::2], found[1::2]):
            wanted.append((member, None if box.is_list else float(score)))
        total += matches
        start += CHUNK
    return total, wanted


def _ascii_lower(text):
    """Lower case as Lua's string.lower does it: A-Z only."""
    return ''.join(chr(ord(c) + 32) if 'A' <= c <= 'Z' else c for c in text)


def _rows(rt, box, members):
    pipe = rt.redis.pipeline(transaction=False)
    ids = [box.mail_id(member) for member, _ in members]
    for mail_id in ids:
        pipe.hmget(rt.keys.record(mail_id or '-'), *LIST_FIELDS)
    rows = []
    for (member, score), mail_id, values in zip(members, ids, pipe.execute()):
        fields = {k: v.decode('utf-8', 'replace') for k, v in zip(LIST_FIELDS, values)
                  if v is not None}
        task = fields.pop('task', None)
        stale = not fields or (box.tasks and task != member.decode('utf-8', 'replace'))
        rows.append(_row(mail_id, fields, score, stale))
    return rows


def _row(mail_id, f, score, stale):
    return {
        'id': mail_id, 'status': f.get('status', 'gone'), 'queue': f.get('queue'),
        'from': f.get('from'), 'to': f.get('to'), 'subject': f.get('subject'),
        'last_error': f.get('last_error') or None, 'attempts': int(f.get('attempts') or 0),
        'attachments': int(f.get('attachments') or 0), 'at': iso(score),
        'at_ts': score, 'created_at': iso(f.get('created_at')),
        'finished_at': iso(f.get('finished_at')), 'stale': stale,
    }


# -- actions on lists

def act(rt, kind, action, ids=None, everything=False, queue=None):
    """Run `action` on the given mails (or on every mail of the list).

    Returns {action, done, skipped}: skipped mails changed state meanwhile
    (or are being sent) and were left alone.
    """
    box = container(rt, kind, queue)
    if action not in box.actions:
        raise ValidationError('action', f'{action!r} is not possible here '
                                        f'(possible: {", ".join(box.actions)})')
    with redis_errors():
        if everything:
            done = _act_on_all(rt, box, action)
            return {'action': action, 'done': done, 'skipped': []}
        ids = _clean_ids(ids)
        done = _apply(rt, box.status, action, ids)
    return {'action': action, 'done': len(done),
            'skipped': [i for i in ids if i not in set(done)]}


def _clean_ids(ids):
    if not isinstance(ids, list) or not ids:
        raise ValidationError('ids', 'give a non-empty list of mail ids (or all)')
    if not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise ValidationError('ids', 'each id must be a non-empty string')
    return list(dict.fromkeys(ids))


def _apply(rt, status, action, ids):
    """One action on mails by id, in chunks. Returns the ids it changed."""
    done = []
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        if action == 'delete':
            done += _delete(rt, status, chunk)
        elif action == 'kill':
            done += _kill(rt, chunk)
        else:
            done += _enqueue(rt, status, chunk)
    return done


def _act_on_all(rt, box, action):
    if action == 'delete':
        return _clear(rt, box)
    done, offset = 0, 0
    while True:
        members = box.read(rt.redis, offset, offset + CHUNK - 1)
        if not members:
            return done
        ids = [i for i in (box.mail_id(m) for m, _ in members) if i]
        moved = len(_apply(rt, box.status, action, ids))
        done += moved
        offset += len(members) - moved        # members left behind are stale; step over


def _clear(rt, box):
    """Empty the container; mails it held are erased."""
    removed = 0
    script = _script(rt.redis, 'admin_clear')
    while True:
        count = script(keys=[box.key], args=[rt.keys.prefix, 'tasks' if box.tasks else 'ids',
                                             box.status, CHUNK])
        removed += count
        if count < CHUNK:
            return removed


def _delete(rt, status, ids):
    keys = rt.keys
    reply = _script(rt.redis, 'admin_delete')(
        keys=[keys.schedule, keys.retry, keys.dead, keys.outbox],
        args=[keys.prefix, status, *ids])
    return [i.decode() for i in reply]


def _kill(rt, ids):
    keys, cfg = rt.keys, rt.config.worker
    now = time.time()
    reply = _script(rt.redis, 'admin_kill')(
        keys=[keys.retry, keys.dead],
        args=[keys.prefix, now, cfg.dead_max, now - cfg.dead_max_days * 86400, *ids])
    return [i.decode() for i in reply]


def _enqueue(rt, status, ids):
    """Fresh tasks for the mails, then one script moves them onto their queues."""
    pipe = rt.redis.pipeline(transaction=False)
    for mail_id in ids:
        pipe.hget(rt.keys.record(mail_id), 'queue')
    args = [rt.keys.prefix, status, time.time()]
    for mail_id, queue in zip(ids, pipe.execute()):
        if queue:
            args += [mail_id, rt.new_task(mail_id, queue.decode())]
    keys = rt.keys
    reply = _script(rt.redis, 'admin_enqueue')(keys=[keys.schedule, keys.retry, keys.dead],
                                               args=args)
    return [i.decode() for i in reply]


# -- one mail

ACTIONS_BY_STATUS = {
    'queued': ('delete',), 'scheduled': ('enqueue', 'delete'),
    'retrying': ('retry', 'kill', 'delete'), 'dead': ('retry', 'delete'),
    'sent': ('delete',), 'cancelled': ('delete',), 'sending': (),
}
ACTION_LABELS = {'enqueue': 'Send now', 'retry': 'Retry now', 'kill': 'Kill',
                 'delete': 'Delete'}


def mail_actions(status):
    return ACTIONS_BY_STATUS.get(status, ('delete',))


def mail_action(rt, mail_id, action):
    """Run one action on one mail, if its state allows it (409 otherwise)."""
    with redis_errors():
        status = rt.redis.hget(rt.keys.record(mail_id), 'status')
        if status is None:
            raise NotFound(f'no mail {mail_id!r}')
        status = status.decode()
        if action not in ACTION_LABELS:
            raise ValidationError('action', f'unknown action {action!r}')
        if action not in mail_actions(status):
            raise Conflict(f'mail {mail_id} is {status}: {action} is not possible')
        done = _apply(rt, status, action, [mail_id])
    if not done:
        raise Conflict(f'mail {mail_id} changed state meanwhile; nothing done')
    return {'id': mail_id, 'action': action, 'done': 1}


def mail_detail(rt, mail_id):
    """Everything about one mail: the API view plus envelope, headers and parts."""
    with redis_errors():
        record = rt.store.get(mail_id, with_raw=True)
    if record is None:
        raise NotFound(f'no mail {mail_id!r}')
    raw = record.get('raw') or b''
    view = service.public_view({k: v for k, v in record.items() if k != 'raw'})
    view['envelope'] = {'from': record.get('from'), 'rcpts': json.loads(record.get('rcpts')
                                                                        or '[]')}
    view['actions'] = list(mail_actions(view['status']))
    view['size'] = len(raw)
    view['raw'] = raw.decode('utf-8', 'replace')
    view.update(message_parts(raw))
    return view


def message_parts(raw):
    """Headers, text and HTML bodies and the attachment list of an RFC 5322 message."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    text = msg.get_body(('plain',))
    html = msg.get_body(('html',))
    return {
        'headers': [[name, str(value)] for name, value in msg.items()],
        'text': _content(text), 'html': _content(html),
        'attachments': [{'index': i, 'filename': part.get_filename() or f'part-{i}',
                         'content_type': part.get_content_type(),
                         'size': len(part.get_payload(decode=True) or b'')}
                        for i, part in enumerate(msg.iter_attachments())],
    }


def _content(part):
    if part is None:
        return None
    try:
        return part.get_content()
    except (LookupError, ValueError):
        return (part.get_payload(decode=True) or b'').decode('utf-8', 'replace')


def raw_message(rt, mail_id):
    with redis_errors():
        raw = rt.redis.hget(rt.keys.record(mail_id), 'raw')
    if raw is None:
        raise NotFound(f'no mail {mail_id!r}')
    return raw


def attachment(rt, mail_id, index):
    """(filename, content type, bytes) of attachment `index`."""
    msg = email.message_from_bytes(raw_message(rt, mail_id), policy=email.policy.default)
    for i, part in enumerate(msg.iter_attachments()):
        if i == index:
            return (part.get_filename() or f'part-{i}', part.get_content_type(),
                    part.get_payload(decode=True) or b'')
    raise NotFound(f'mail {mail_id} has no attachment {index}')


# -- queues

def queues(rt, now=None):
    """Every queue with size, latency (seconds since its oldest mail became due), paused."""
    names = queue_names(rt)
    keys = rt.keys
    now = now or time.time()
    with redis_errors():
        pipe = rt.redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(keys.queue(name))
            pipe.lindex(keys.queue(name), -1)
        pipe.smembers(keys.paused)
        *replies, paused = pipe.execute()
        sizes, oldest = replies[0::2], replies[1::2]
        pipe = rt.redis.pipeline(transaction=False)
        for task in oldest:
            pipe.hmget(keys.record((task and task_mail_id(task)) or '-'), 'created_at', 'send_at', 'next_at',
                       'queued_at')
        due = [max((float(v) for v in values if v), default=None) for values in pipe.execute()]
    paused = {p.decode() for p in paused}
    return [{'name': name, 'size': size, 'paused': name in paused,
             'latency': round(max(0.0, now - since), 3) if size and since else 0.0}
            for name, size, since in zip(names, sizes, due)]


def set_paused(rt, name, paused):
    """Pause or resume a queue: take.lua skips paused queues."""
    if name not in queue_names(rt):
        raise NotFound(f'no queue {name!r}')
    with redis_errors():
        (rt.redis.sadd if paused else rt.redis.srem)(rt.keys.paused, name)
    return {'queue': name, 'paused': paused}


def clear_queue(rt, name):
    result = act(rt, 'queue', 'delete', everything=True, queue=name)
    return {'queue': name, 'deleted': result['done']}


# -- workers

def workers(rt):
    """Live worker processes with what each thread is sending now."""
    keys = rt.keys
    with redis_errors():
        ids = [w.decode() for w in rt.redis.zrange(keys.workers, 0, -1)]
        pipe = rt.redis.pipeline(transaction=False)
        for wid in ids:
            pipe.hgetall(keys.worker(wid))
            pipe.hgetall(keys.busy(wid))
        replies = pipe.execute()
    found = []
    for wid, info, busy in zip(ids, replies[0::2], replies[1::2]):
        info = {k.decode(): v.decode() for k, v in info.items()}
        jobs = [{'thread': thread.decode(), **json.loads(job)} for thread, job in busy.items()]
        for job in jobs:
            job['since_iso'] = iso(job.get('since'))
        found.append({
            'id': wid, 'host': info.get('host'), 'pid': info.get('pid'),
            'queues': [q for q, _ in json.loads(info.get('queues') or '[]')],
            'concurrency': int(info.get('concurrency') or 0),
            'worker_type': info.get('worker_type'), 'started': iso(info.get('started')),
            'started_ts': float(info.get('started') or 0), 'beat': iso(info.get('beat')),
            'beat_ts': float(info.get('beat') or 0), 'rss': int(info.get('rss') or 0),
            'quiet': info.get('quiet') == '1', 'busy': sorted(jobs, key=lambda j: j['since']),
        })
    return found


def command_worker(rt, worker_id, command):
    """Queue 'quiet' or 'stop' for a worker; its heartbeat runs it within a second or so."""
    if command not in ('quiet', 'stop'):
        raise ValidationError('command', 'must be quiet or stop')
    keys = rt.keys
    with redis_errors():
        if rt.redis.zscore(keys.workers, worker_id) is None:
            raise NotFound(f'no live worker {worker_id!r}')
        pipe = rt.redis.pipeline(transaction=True)
        pipe.rpush(keys.commands(worker_id), command)
        pipe.expire(keys.commands(worker_id), 60)
        pipe.execute()
    return {'worker': worker_id, 'command': command}


# -- overview

def history(rt, days=30, now=None):
    """Processed and failed per day (UTC) for the last `days` days, oldest first."""
    if days not in (7, 30, 90):
        raise ValidationError('days', 'must be 7, 30 or 90')
    now = now or time.time()
    dates = [time.strftime('%Y-%m-%d', time.gmtime(now - d * 86400))
             for d in range(days - 1, -1, -1)]
    keys = rt.keys
    with redis_errors():
        values = rt.redis.mget([keys.stat('processed', d) for d in dates] +
                               [keys.stat('failed', d) for d in dates])
    return [{'day': day, 'processed': int(p or 0), 'failed': int(f or 0)}
            for day, p, f in zip(dates, values[:days], values[days:])]


def redis_info(rt):
    """Version, uptime, memory, clients and persistence of the Redis mailq uses."""
    with redis_errors():
        info = rt.redis.info()
        warning = persistence_warning(rt.redis)
    return {
        'version': info.get('redis_version'), 'uptime': int(info.get('uptime_in_seconds', 0)),
        'memory': info.get('used_memory_human'), 'memory_peak': info.get('used_memory_peak_human'),
        'clients': info.get('connected_clients'), 'aof': bool(info.get('aof_enabled')),
        'rdb_changes_since_save': info.get('rdb_changes_since_last_save'),
        'persistence': warning is None, 'warning': warning,
    }


# -- cron (mailq.cron.jobs, when that part is installed)

def _cron():
    try:
        from .cron import jobs
    except ImportError:
        return None
    return jobs


def cron_available():
    return _cron() is not None


def cron_jobs(rt):
    jobs = _cron()
    return jobs.list_jobs(rt) if jobs else []


def cron_job(rt, name):
    jobs = _cron()
    if jobs is None:
        raise NotFound(f'no cron job {name!r}')
    return jobs.get_job(rt, name)


def cron_action(rt, name, action):
    """Run now, pause or resume a periodic job; returns what mailq.cron.jobs returns."""
    jobs = _cron()
    if jobs is None or action not in ('run', 'pause', 'resume'):
        raise NotFound(f'no cron action {action!r}')
    run = {'run': jobs.run_now, 'pause': jobs.pause, 'resume': jobs.resume}[action]
    return run(rt, name)
