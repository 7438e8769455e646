"""Listings and actions behind the dashboard and its JSON API.

Pages and API routes call these functions and nothing else, so both always
agree. They check what the user asked for and ask the store (mailq/store/):
an unfiltered list is one page of a container and the list columns of its
mails; only a filter scans. Every state change is one Lua script
(store/scripts/admin_*.lua) that keeps record.status, record.task and the
containers consistent; bulk actions run in chunks so Redis is never blocked
for long, and an "all" action acts on each mail of the list once.
"""
import email
import email.policy
import html.parser
import json
import math
import re
import time

from .cron import jobs as cron_jobs_module
from .errors import Conflict, NotFound, ValidationError
from .redisconn import persistence_warning
from .service import iso, redis_errors
from .store.containers import CHUNK
from .store.record import body_gone
from .store.states import ACTION_LABELS, DELETE, KILL, LISTS, actions_for

PAGE_SIZE = 25
MAX_PAGE = 10 ** 9       # (page - 1) * PAGE_SIZE must stay a Redis integer


def container(rt, kind, queue=None):
    """The store container behind a dashboard list (404 for an unknown one)."""
    if kind == 'queue':
        if queue not in queue_names(rt):
            raise NotFound(f'no queue {queue!r}')
        return rt.store.queue(queue)
    if kind not in LISTS:
        raise NotFound(f'no list {kind!r}')
    return rt.store.list_container(kind)


def queue_names(rt):
    return rt.store.known_queues()


# -- listings

def listing(rt, kind, page=1, query='', scan_from=0, queue=None):
    """One page of a list: {rows, page, pages, total, query, scan}. Filters on
    to/subject/error, over FILTER_SCAN members from position `scan_from`: `scan` says
    which (`from`, `next`: where "search older" goes on, None at the end), and `total`
    counts the matches among them."""
    box = container(rt, kind, queue)
    page = _page_number(page)
    query = (query or '').strip()
    start = (page - 1) * PAGE_SIZE
    scan = None
    with redis_errors():
        if query:
            scan_from = _position(scan_from)
            total, members, following = box.filter(_ascii_lower(query), start, PAGE_SIZE,
                                                   start=scan_from)
            scan = {'from': scan_from, 'next': following}
        else:
            total = box.size()
            members = box.page(start, start + PAGE_SIZE - 1)
        rows = box.rows(members)
    return {'kind': kind, 'queue': queue, 'rows': rows, 'page': page, 'total': total,
            'pages': max(1, math.ceil(total / PAGE_SIZE)), 'query': query, 'scan': scan,
            'page_size': PAGE_SIZE, 'actions': list(box.kind.actions),
            'newest_first': box.kind.newest_first}


def _position(value):
    """A list position to scan from (?scan=): a whole number, 0 up."""
    try:
        value = int(value or 0)
    except (TypeError, ValueError):
        raise ValidationError('scan', 'must be a whole number') from None
    if not 0 <= value <= MAX_PAGE * PAGE_SIZE:
        raise ValidationError('scan', f'must be between 0 and {MAX_PAGE * PAGE_SIZE}')
    return value


def _page_number(page):
    """A 1-based page; capped, since an index past Redis's 64-bit range is an error there."""
    try:
        page = int(page or 1)
    except (TypeError, ValueError):
        raise ValidationError('page', 'must be a whole number') from None
    if not 1 <= page <= MAX_PAGE:
        raise ValidationError('page', f'must be between 1 and {MAX_PAGE}')
    return page


def _ascii_lower(text):
    """Lower case as Lua's string.lower does it: A-Z only."""
    return ''.join(chr(ord(c) + 32) if 'A' <= c <= 'Z' else c for c in text)


# -- actions on lists

def act(rt, kind, action, ids=None, everything=False, queue=None):
    """Run `action` on the given mails (or on every mail of the list, each at most once).

    Returns {action, done, skipped}: skipped mails changed state meanwhile
    (or are being sent) and were left alone.
    """
    box = container(rt, kind, queue)
    if action not in box.kind.actions:
        raise ValidationError('action', f'{action!r} is not possible here '
                                        f'(possible: {", ".join(box.kind.actions)})')
    with redis_errors():
        if everything:
            return {'action': action, 'done': _act_on_all(rt, box, action), 'skipped': []}
        ids = _clean_ids(ids)
        done = _apply(rt, box.kind.state, action, ids)
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
        if action == DELETE:
            done += rt.store.erase(status, chunk)
        elif action == KILL:
            done += rt.store.kill(chunk)
        else:
            done += rt.store.enqueue_now(status, chunk, rt.new_task)
    return done


def _act_on_all(rt, box, action):
    """The members of now, each acted on once: a mail that comes back to the list at
    once (a retry that fails again) is not acted on a second time."""
    if action == DELETE:
        return box.clear()
    ids = [i for i in (box.mail_id(m) for m in box.members()) if i]
    return len(_apply(rt, box.kind.state, action, list(dict.fromkeys(ids))))


# -- one mail

def mail_actions(status):
    return actions_for(status)


def mail_action(rt, mail_id, action):
    """Run one action on one mail, if its state allows it (409 otherwise)."""
    with redis_errors():
        status = rt.store.status(mail_id)
        if status is None:
            raise NotFound(f'no mail {mail_id!r}')
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
    raw = record.raw
    view = record.view()
    if not record.body_kept:
        view['body_note'] = body_gone(rt.config.worker)
    view['envelope'] = record.envelope
    view['actions'] = list(mail_actions(view['status']))
    view['size'] = len(raw)
    view['raw'] = raw.decode('utf-8', 'replace')
    view.update(message_parts(raw))
    view['links'] = links(view['html'], view['text'])
    with redis_errors():
        view['in_outbox'] = rt.store.outbox.contains(mail_id)
    return view


class _Links(html.parser.HTMLParser):
    """The href of every <a> and <area>, with the link's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found, self._open = [], None

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get('href')
        if tag in ('a', 'area') and href is not None:
            self.found.append([href.strip(), ''])
            self._open = self.found[-1] if tag == 'a' else None

    def handle_data(self, data):
        if self._open is not None:
            self._open[1] += data

    def handle_endtag(self, tag):
        if tag == 'a':
            self._open = None


TEXT_URL = re.compile(r'\b(?:https?|ftp)://[^\s<>"\')\]]+', re.IGNORECASE)
MAX_LINKS = 500


def links(html_part, text_part):
    """The links of a mail, as Mailpit's link check lists them: [{url, text, part,
    https, problem}], where https is True only for an absolute https URL."""
    found = []
    if html_part:
        parser = _Links()
        try:
            parser.feed(html_part)
        except Exception:       # noqa: BLE001 - a broken mail must not break its page
            pass
        found += [(url, ' '.join(text.split()), 'HTML') for url, text in parser.found]
    if text_part:
        found += [(url.rstrip('.,;:!?'), '', 'text') for url in TEXT_URL.findall(text_part)]
    seen, out = set(), []
    for url, text, part in found[:MAX_LINKS]:
        if (url, part) in seen:
            continue
        seen.add((url, part))
        out.append({'url': url, 'text': text, 'part': part, **_link_check(url)})
    return out


def _link_check(url):
    lowered = url.lower()
    if lowered.startswith('https://') and len(url) > 8:
        return {'https': True, 'problem': None}
    if lowered.startswith('http://'):
        problem = 'not https'
    elif lowered.startswith(('mailto:', 'tel:')):
        problem = lowered.split(':', 1)[0] + ': link'
    elif lowered.startswith(('javascript:', 'data:', 'vbscript:')):
        problem = 'script or data URL'
    elif '://' not in lowered and not lowered.startswith('//'):
        problem = 'relative'
    else:
        problem = 'not https'
    return {'https': False, 'problem': problem}


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
        raw = rt.store.raw(mail_id)
        known = raw is not None or rt.store.status(mail_id) is not None
    if raw is None:
        raise NotFound(f'mail {mail_id}: {body_gone(rt.config.worker)}' if known
                       else f'no mail {mail_id!r}')
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
    with redis_errors():
        found = rt.store.queue_latencies(names, now)
        paused = rt.store.paused_queues()
    return [{'name': name, 'size': found[name][0], 'paused': name in paused,
             'latency': found[name][1]} for name in names]


def set_paused(rt, name, paused):
    """Pause or resume a queue: the fetch script skips paused queues."""
    if name not in queue_names(rt):
        raise NotFound(f'no queue {name!r}')
    with redis_errors():
        rt.store.set_paused(name, paused)
    return {'queue': name, 'paused': paused}


def clear_queue(rt, name):
    result = act(rt, 'queue', 'delete', everything=True, queue=name)
    return {'queue': name, 'deleted': result['done']}


# -- workers

def workers(rt):
    """Live worker processes with what each thread is sending now."""
    with redis_errors():
        registered = rt.store.workers.details()
    found = []
    for wid, info, busy in registered:
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
    with redis_errors():
        if not rt.store.workers.command(worker_id, command):
            raise NotFound(f'no live worker {worker_id!r}')
    return {'worker': worker_id, 'command': command}


# -- overview

HISTORY_DAYS = (7, 30, 90, 180)
DAYS_RULE = 'must be ' + ', '.join(map(str, HISTORY_DAYS[:-1])) + f' or {HISTORY_DAYS[-1]}'
OUTCOME_SERIES = ('sent', 'retrying', 'dead')


def history(rt, days=30, now=None):
    """Per day (UTC) for the last `days` days, oldest first: processed and failed (since
    the first release), and attempts by outcome (sent, retrying, dead) and by queue
    (since this one; a day before it has none)."""
    if days not in HISTORY_DAYS:
        raise ValidationError('days', DAYS_RULE)
    now = now or time.time()
    dates = [time.strftime('%Y-%m-%d', time.gmtime(now - d * 86400))
             for d in range(days - 1, -1, -1)]
    with redis_errors():
        counts = rt.store.stats.per_day(dates)
        detail = rt.store.stats.outcomes_per_day(dates)
    queues = queue_names(rt)
    return [{'day': day, 'processed': p, 'failed': f,
             **{name: found.get(name, 0) for name in OUTCOME_SERIES},
             'queues': {q: found.get('queue:' + q, 0) for q in queues}}
            for day, (p, f), found in zip(dates, counts, detail)]


def redis_info(rt):
    """Version, uptime, memory, clients and persistence of the Redis mailq uses."""
    with redis_errors():
        info = rt.store.server_info()
        warning = persistence_warning(rt.redis)
    return {
        'version': info.get('redis_version'), 'uptime': int(info.get('uptime_in_seconds', 0)),
        'memory': info.get('used_memory_human'), 'memory_peak': info.get('used_memory_peak_human'),
        'clients': info.get('connected_clients'), 'aof': bool(info.get('aof_enabled')),
        'rdb_changes_since_save': info.get('rdb_changes_since_last_save'),
        'persistence': warning is None, 'warning': warning,
    }


# -- cron

def cron_jobs(rt):
    return cron_jobs_module.list_jobs(rt)


def cron_job(rt, name):
    return cron_jobs_module.get_job(rt, name)


def cron_action(rt, name, action):
    """Run now, pause or resume a periodic job; returns what mailq.cron.jobs returns."""
    actions = {'run': cron_jobs_module.run_now, 'pause': cron_jobs_module.pause,
               'resume': cron_jobs_module.resume}
    if action not in actions:
        raise NotFound(f'no cron action {action!r}')
    return actions[action](rt, name)


def destinations(rt, now=None):
    """Every limiter and the recipient domains of the held mails (store/limits.py):
    the Destinations tab and GET /api/destinations."""
    return {'limits_on': rt.store.throttle.on, **rt.store.throttle.view(now)}
