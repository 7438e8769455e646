"""The dashboard: server-rendered pages at `/`, in the spirit of Sidekiq::Web.

Pages read through mailq.admin and forms post to routes that call the same
functions as the JSON API (admin_api.py), then redirect back (303). Every
asset is served by mailq itself; mail HTML is only ever shown inside an
`<iframe sandbox srcdoc>` without allow-scripts.
"""
import datetime
import functools
import math
import mimetypes
import time
import unicodedata
from importlib import resources
from urllib.parse import quote, urlencode, urlsplit

import bottle
import jinja2

from .. import admin, service
from ..errors import MailqError, Unavailable
from ..store.states import ACTION_LABELS, ACTIONS, LISTS, QUEUE_LIST, QUEUED, route_pattern
from ..templates import builtin_templates, template_loader
from . import csrf, security
from .params import days, paging

# Any mail action routes; admin.act answers 422 for one the list does not allow.
MAIL_VERBS = route_pattern(ACTIONS)
QUEUE_VERBS = route_pattern(('pause', 'resume', 'clear') + QUEUE_LIST.actions)
FLASH_PARAMS = ('did', 'n', 'skipped')
DONE_WORDS = {'enqueue': 'Sent to the queue', 'retry': 'Retried', 'kill': 'Killed',
              'delete': 'Deleted', 'clear': 'Cleared', 'pause': 'Paused',
              'resume': 'Resumed', 'quiet': 'Asked to quiet', 'stop': 'Asked to stop',
              'run': 'Run enqueued', 'run_failed': 'The run failed; see its history below',
              'add': 'Added', 'remove': 'Removed'}


# -- templates

@functools.lru_cache(maxsize=1)
def environment():
    loader = template_loader(builtin_templates('dashboard'))
    env = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, auto_reload=False,
                             finalize=lambda value: '' if value is None else value)
    env.filters.update(ago=ago, duration=duration, filesize=filesize)
    env.globals.update(page_url=page_url, labels=ACTION_LABELS)
    return env


def ago(ts, now=None):
    """'3 min ago' or 'in 5 min' for a unix time (or '' for none)."""
    if ts in (None, ''):
        return ''
    if isinstance(ts, str) and 'T' in ts:
        ts = datetime.datetime.fromisoformat(ts).timestamp()
    delta = float(ts) - (now or time.time())
    text = duration(abs(delta))
    return f'in {text}' if delta > 1 else f'{text} ago'


def duration(seconds):
    seconds = float(seconds or 0)
    for unit, size in (('d', 86400), ('h', 3600), ('min', 60)):
        if seconds >= size:
            return f'{seconds / size:.1f} {unit}'.replace('.0 ', ' ')
    return f'{seconds:.0f} s' if seconds >= 1 else f'{seconds * 1000:.0f} ms'


def filesize(size):
    size = float(size or 0)
    for unit in ('B', 'KB', 'MB', 'GB'):
        if size < 1024 or unit == 'GB':
            return f'{size:.0f} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
        size /= 1024


def page_url(path, **params):
    """A list URL with its page and filter; page 1 and empty values are left out."""
    params = {k: v for k, v in params.items() if v not in (None, '') and (k, v) != ('page', 1)}
    return path + ('?' + urlencode(params) if params else '')


def render(rt, name, status=200, **context):
    """A full page: the template plus what every page shows (nav, summary, token)."""
    sid = security.ensure_session()
    try:
        summary = service.stats(rt)
    except Unavailable:
        summary = None
    context.update(
        path=bottle.request.path, summary=summary, csrf_field=csrf.FIELD,
        csrf_token=csrf.masked_token(rt.config.web.secret, sid),
        outbox_on=rt.config.smtp.transport == 'outbox', cron_on=admin.cron_available(),
        webhooks_on=bool(rt.config.webhooks), limits_on=rt.store.throttle.on,
        flash=_flash(), back=bottle.request.fullpath + (
            '?' + bottle.request.query_string if bottle.request.query_string else ''))
    bottle.response.status = status
    bottle.response.content_type = 'text/html; charset=utf-8'
    security.apply_headers()
    return environment().get_template(name).render(**context)


def _flash():
    """The outcome line after a redirect, from a fixed vocabulary (never echoed text)."""
    query = bottle.request.query
    word = DONE_WORDS.get(query.get('did', ''))
    if not word:
        return None
    count, skipped = _count(query.get('n', '')), _count(query.get('skipped', ''))
    text = word + (f': {count} mail(s)' if count is not None else '')
    if skipped:
        text += f'; {skipped} skipped (they changed state or are being sent)'
    return text


def _count(text):
    """A count from the URL, or None: '²' passes str.isdigit() but not int()."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None


def error_page(rt, status, message):
    """An HTML error page for dashboard paths (the API keeps JSON)."""
    try:
        return render(rt, 'error.html', status=status, status_code=status, message=message)
    except Exception:
        bottle.response.content_type = 'text/plain; charset=utf-8'
        security.apply_headers()
        return f'{status}: {message}'


def page(rt):
    """Decorator for GET pages: mailq errors become HTML error pages."""
    def wrap(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except MailqError as exc:
                return error_page(rt, exc.http_status, str(exc))
        return wrapper
    return wrap


def action(rt):
    """Decorator for form POSTs: run, then redirect back with the outcome."""
    def wrap(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                result = func(*args, **kwargs) or {}
            except MailqError as exc:
                return error_page(rt, exc.http_status, str(exc))
            return _redirect_back(result)
        return wrapper
    return wrap


def safe_back(value):
    """A path (and query) on this site to return to, else '/'. Browsers drop tabs and
    newlines and read a backslash as a slash, so `/\t/evil.example` would leave the
    site: refuse control characters, whitespace and backslashes outright, then
    require no scheme and no host, and keep only the path and query."""
    if not value or '\\' in value or any(
            c.isspace() or unicodedata.category(c).startswith('C') for c in value):
        return '/'
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith('/') \
            or parts.path.startswith('//'):
        return '/'
    return parts.path + ('?' + parts.query if parts.query else '')


def _redirect_back(result):
    """303 to the page the form came from, with the outcome for the flash line."""
    base, _, query = safe_back(result.get('redirect') or bottle.request.forms.get('back')) \
        .partition('?')
    params = [p for p in query.split('&') if p and p.split('=')[0] not in FLASH_PARAMS]
    done = result.get('done')
    params += [f"did={quote(str(result.get('did', '')))}"]
    if isinstance(done, int):
        params.append(f'n={done}')
    if result.get('skipped'):
        params.append(f"skipped={len(result['skipped'])}")
    security.apply_headers()
    bottle.redirect(base + '?' + '&'.join(params), 303)


def selected_ids():
    """The ids a list form acts on: a row's own button, else the ticked boxes."""
    forms = bottle.request.forms
    one = forms.getunicode('one')
    return [one] if one else [i for i in forms.getall('id') if i]


def wants_all():
    return bottle.request.forms.get('all') == '1'


# -- history chart (server-side SVG)

CHART_W, CHART_H = 720, 160


def chart(days):
    """Polyline points for the processed and failed series, plus axis labels."""
    top = max([d['processed'] for d in days] + [d['failed'] for d in days] + [1])
    top = _nice(top)
    step = CHART_W / max(len(days) - 1, 1)

    def points(key):
        return ' '.join(f'{i * step:.1f},{CHART_H - d[key] / top * CHART_H:.1f}'
                        for i, d in enumerate(days))
    return {'processed': points('processed'), 'failed': points('failed'), 'top': top,
            'width': CHART_W, 'height': CHART_H, 'first': days[0]['day'],
            'last': days[-1]['day'],
            'bars': [{'x': i * step, 'day': d['day'], 'processed': d['processed'],
                      'failed': d['failed']} for i, d in enumerate(days)]}


def _nice(value):
    """The next 1, 2 or 5 times a power of ten at or above value."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


# -- routes

def install(app, rt):
    @app.get('/static/<name>')
    def static(name):
        file = resources.files('mailq').joinpath('web', 'static', name)
        if '/' in name or name.startswith('.') or not file.is_file():
            return error_page(rt, 404, 'no such file')
        bottle.response.content_type = mimetypes.guess_type(name)[0] or 'application/octet-stream'
        security.apply_headers()
        bottle.response.set_header('Cache-Control', 'private, max-age=300')
        return file.read_bytes()

    @app.get('/')
    @page(rt)
    def overview():
        history = admin.history(rt, days())
        return render(rt, 'overview.html', days=len(history), chart=chart(history),
                      redis=admin.redis_info(rt), queues=admin.queues(rt))

    @app.get('/busy')
    @page(rt)
    def busy():
        return render(rt, 'busy.html', workers=admin.workers(rt), now=time.time())

    @app.post('/busy/<command:re:quiet|stop>')
    @action(rt)
    def command(command):
        forms = bottle.request.forms
        ids = [w['id'] for w in admin.workers(rt)] if wants_all() else \
            [forms.getunicode('worker') or '']
        for worker_id in ids:
            admin.command_worker(rt, worker_id, command)
        return {'did': command}

    @app.get('/destinations')
    @page(rt)
    def destinations():
        return render(rt, 'destinations.html', now=time.time(), **admin.destinations(rt))

    @app.get('/queues')
    @page(rt)
    def queues():
        return render(rt, 'queues.html', queues=admin.queues(rt))

    @app.get('/queues/<name>')
    @page(rt)
    def queue(name):
        info = next((q for q in admin.queues(rt) if q['name'] == name), None)
        listing = admin.listing(rt, QUEUE_LIST.name, *paging(), queue=name)
        return render(rt, 'list.html', kind=QUEUE_LIST.name, listing=listing, info=info,
                      title=f'Queue {name}', base=f'/queues/{name}')

    @app.post(f'/queues/<name>/<verb:re:{QUEUE_VERBS}>')
    @action(rt)
    def queue_action(name, verb):
        if verb in ('pause', 'resume'):
            admin.set_paused(rt, name, verb == 'pause')
            return {'did': verb}
        if verb == 'clear' or wants_all():
            return {'did': 'clear', 'done': admin.clear_queue(rt, name)['deleted']}
        return {'did': verb, **admin.act(rt, QUEUE_LIST.name, verb, selected_ids(),
                                         queue=name)}

    for kind in LISTS.values():
        _install_list(app, rt, kind)

    @app.get('/mails/<mail_id>')
    @page(rt)
    def mail(mail_id):
        detail = admin.mail_detail(rt, mail_id)
        return render(rt, 'mail.html', mail=detail, list_url=list_url(rt, detail))

    @app.get('/mails/<mail_id>/raw')
    @page(rt)
    def raw(mail_id):
        data = admin.raw_message(rt, mail_id)
        return security.download(data, f'{mail_id}.eml', 'message/rfc822')

    @app.get('/mails/<mail_id>/attachments/<index:int>')
    @page(rt)
    def download(mail_id, index):
        filename, _, data = admin.attachment(rt, mail_id, index)
        return security.download(data, filename, 'application/octet-stream')

    @app.post(f'/mails/<mail_id>/<verb:re:{MAIL_VERBS}>')
    @action(rt)
    def mail_action(mail_id, verb):
        return {'did': verb, **admin.mail_action(rt, mail_id, verb)}

    @app.get('/cron')
    @page(rt)
    def cron():
        return render(rt, 'cron.html', jobs=admin.cron_jobs(rt))

    @app.get('/cron/<name>')
    @page(rt)
    def cron_job(name):
        return render(rt, 'cron_job.html', job=admin.cron_job(rt, name))

    @app.post('/cron/<name>/<verb:re:run|pause|resume>')
    @action(rt)
    def cron_action(name, verb):
        result = admin.cron_action(rt, name, verb)
        if verb == 'run' and result.get('outcome') != 'ok':
            return {'did': 'run_failed', 'redirect': f'/cron/{name}'}
        return {'did': verb}


def _install_list(app, rt, kind):
    """The page of one list, and its actions (states.py's; admin.act checks the list's)."""
    @app.get(f'/{kind.name}', name=f'list_{kind.name}')
    @page(rt)
    def listing():
        data = admin.listing(rt, kind.name, *paging())
        return render(rt, 'list.html', kind=kind.name, listing=data, info=None,
                      title=kind.name.capitalize(), base=f'/{kind.name}')

    @app.post(f'/{kind.name}/<verb:re:{MAIL_VERBS}>', name=f'act_{kind.name}')
    @action(rt)
    def act(verb):
        result = admin.act(rt, kind.name, verb, None if wants_all() else selected_ids(),
                           everything=wants_all())
        return {'did': verb, **result}


def list_url(rt, mail):
    """The list a mail shows up in, where Delete on its page returns to."""
    if mail['status'] == QUEUED:
        return f"/queues/{mail['queue']}"
    kind = next((k for k in LISTS.values() if k.state == mail['status']), None)
    if kind is None or (kind.name == 'outbox' and rt.config.smtp.transport != 'outbox'):
        return '/'
    return f'/{kind.name}'
