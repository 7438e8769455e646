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

from .. import admin, search, service
from ..errors import MailqError, Unavailable, ValidationError
from ..store.states import ACTION_LABELS, ACTIONS, LISTS, QUEUE_LIST, QUEUED, route_pattern
from ..templates import builtin_templates, template_loader
from . import csrf, security
from .params import days, paging

# Any mail action routes; admin.act answers 422 for one the list does not allow.
MAIL_VERBS = route_pattern(ACTIONS)
QUEUE_VERBS = route_pattern(('pause', 'resume', 'clear') + QUEUE_LIST.actions)
FLASH_PARAMS = ('did', 'n', 'skipped')
COLUMNS = {
    'queue': ('Created', 'To', 'Subject', 'Attempts'),
    'scheduled': ('Send at', 'Queue', 'To', 'Subject'),
    'retrying': ('Next attempt', 'Attempts', 'To', 'Subject', 'Last error'),
    'dead': ('Died', 'Attempts', 'To', 'Subject', 'Last error'),
    'outbox': ('Time', 'From', 'To', 'Subject', ''),
}
DONE_WORDS = {'enqueue': 'Sent to the queue', 'retry': 'Retried', 'kill': 'Killed',
              'delete': 'Deleted', 'clear': 'Cleared', 'pause': 'Paused',
              'resume': 'Resumed', 'quiet': 'Asked to quiet', 'stop': 'Asked to stop',
              'run': 'Run enqueued', 'run_failed': 'The run failed; see its history below',
              'add': 'Added', 'remove': 'Removed',
              'release': 'Released as a new mail; it is on its way through the relay'}


# -- templates

@functools.lru_cache(maxsize=1)
def environment():
    loader = template_loader(builtin_templates('dashboard'))
    env = jinja2.Environment(loader=loader, autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, auto_reload=False,
                             finalize=lambda value: '' if value is None else value)
    env.filters.update(ago=ago, duration=duration, filesize=filesize)
    env.globals.update(page_url=page_url, labels=ACTION_LABELS, columns_of=COLUMNS.get)
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
    """A list URL with its page, filter and scan start; defaults are left out."""
    params = {k: v for k, v in params.items()
              if v not in (None, '') and (k, v) not in (('page', 1), ('scan', 0))}
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
        outbox_on=outbox_on(rt),
        staging=rt.config.smtp.staging_text,
        release_on=rt.config.smtp.release_relay() is not None,
        webhooks_on=bool(rt.config.webhooks), limits_on=rt.store.throttle.on,
        flash=_flash(), back=bottle.request.fullpath + (
            '?' + bottle.request.query_string if bottle.request.query_string else ''))
    bottle.response.status = status
    bottle.response.content_type = 'text/html; charset=utf-8'
    security.apply_headers()
    return environment().get_template(name).render(**context)


def outbox_on(rt):
    """The Outbox tab: with transport = outbox, and in staging with allow_recipients
    (which keeps the mail it does not send there)."""
    smtp = rt.config.smtp
    return smtp.transport == 'outbox' or smtp.staging == 'allow'


def fragment(rt, name, **context):
    """A part of a page (list rows, the outbox's pane), fetched by dashboard.js."""
    sid = security.ensure_session()
    context.update(csrf_field=csrf.FIELD, csrf_token=csrf.masked_token(rt.config.web.secret, sid),
                   release_on=rt.config.smtp.release_relay() is not None,
                   staging=rt.config.smtp.staging_text, back=safe_back(
                       bottle.request.query.getunicode('back') or '/outbox'))
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


# -- charts (server-side SVG)

CHART_W, CHART_H = 720, 160        # the realtime chart (drawn by dashboard.js)
HIST_W, HIST_H = 1100, 230          # the history charts: plot area plus the axes' margins
MARGIN = {'left': 46, 'right': 10, 'top': 10, 'bottom': 28}
MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')


def chart(days):
    """The realtime chart's size (its points come from /api/stats in the browser)."""
    return {'width': CHART_W, 'height': CHART_H}


def history_charts(days, queues):
    """Two SVG charts of the history: by outcome (plus all attempts and failures, which
    the days before per-outcome counters have too) and by queue."""
    outcome = [('processed', 'all attempts'), ('sent', 'sent'), ('retrying', 'retrying'),
               ('dead', 'dead')]
    by_queue = [(f'q{i % 3}', q) for i, q in enumerate(queues)]
    values = {'processed': [d['processed'] for d in days], 'failed': [d['failed'] for d in days]}
    for name in ('sent', 'retrying', 'dead'):
        values[name] = [d.get(name, 0) for d in days]
    queue_values = {f'q{i % 3}:{q}': [d.get('queues', {}).get(q, 0) for d in days]
                    for i, q in enumerate(queues)}
    tips = [_tip(d, queues) for d in days]
    return [
        _svg_chart('outcome', 'Attempts per day by outcome', days, tips,
                   [(key, label, values[key]) for key, label in outcome]),
        _svg_chart('queue', 'Attempts per day by queue', days, tips,
                   [(key, label, queue_values[f'{key}:{label}']) for key, label in by_queue]),
    ]


def _tip(day, queues):
    lines = [f"{day['day']}: {day['processed']:,} processed, {day['failed']:,} failed",
             ' · '.join(f"{name} {day.get(name, 0):,}" for name in ('sent', 'retrying', 'dead'))]
    if queues:
        lines.append(' · '.join(f"{q} {day.get('queues', {}).get(q, 0):,}" for q in queues))
    return '\n'.join(lines)


def _svg_chart(name, title, days, tips, series):
    """Axes (days on x, counts on y, with gridlines), one polyline per series, and one
    focusable band per day whose tooltip has that day's exact figures."""
    left, top_m = MARGIN['left'], MARGIN['top']
    width = HIST_W - left - MARGIN['right']
    height = HIST_H - top_m - MARGIN['bottom']
    peak = max([v for _, _, vals in series for v in vals] + [1])
    top = _nice(peak)
    n = len(days)
    step = width / max(n - 1, 1)

    def x(i):
        return left + i * step

    def y(v):
        return top_m + height - v / top * height
    lines = [{'key': key, 'label': label,
              'points': ' '.join(f'{x(i):.1f},{y(v):.1f}' for i, v in enumerate(vals)),
              'total': sum(vals)} for key, label, vals in series]
    y_ticks = [{'y': round(y(top * k / 4), 1), 'label': _count_label(top * k / 4)}
               for k in range(5)]
    every = max(1, math.ceil(n / 8))
    x_ticks = [{'x': round(x(i), 1), 'label': _day_label(d['day'])}
               for i, d in enumerate(days) if (n - 1 - i) % every == 0]
    band = step if n > 1 else width
    points = [{'x': round(max(left, x(i) - band / 2), 1),
               'w': round(min(band, width), 1), 'day': d['day'], 'tip': tips[i]}
              for i, d in enumerate(days)]
    return {'name': name, 'title': title, 'width': HIST_W, 'height': HIST_H, 'left': left,
            'top': top_m, 'plot_w': width, 'plot_h': height, 'bottom': top_m + height,
            'lines': lines, 'y_ticks': y_ticks, 'x_ticks': x_ticks, 'points': points,
            'scale_top': top, 'first': days[0]['day'], 'last': days[-1]['day']}


def _count_label(value):
    if value >= 1000:
        return f'{value / 1000:g}k'
    return f'{value:g}'


def _day_label(day):
    year, month, date = day.split('-')
    return f'{MONTHS[int(month) - 1]} {int(date)}'


def _nice(value):
    """The next 1, 2 or 5 times a power of ten at or above value (4 for a 4-tick axis
    of small counts: 0, 1, 2, 3, 4)."""
    if value <= 4:
        return 4
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 4, 5, 10) if m * power >= value)


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
                      charts=history_charts(history, admin.queue_names(rt)),
                      history_days=admin.HISTORY_DAYS, redis=admin.redis_info(rt),
                      queues=admin.queues(rt))

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

    @app.get('/queues/<name>/rows')
    @page(rt)
    def queue_rows(name):
        return fragment(rt, 'rows.html', kind=QUEUE_LIST.name, base=f'/queues/{name}',
                        listing=admin.listing(rt, QUEUE_LIST.name, *paging(), queue=name))

    @app.get('/outbox/<mail_id>/pane')
    @page(rt)
    def pane(mail_id):
        return fragment(rt, 'pane.html', selected=admin.mail_detail(rt, mail_id))

    @app.post('/outbox/<mail_id>/release')
    @action(rt)
    def release(mail_id):
        to = [a.strip() for a in (bottle.request.forms.getunicode('to') or '').split(',')
              if a.strip()]
        if not to:
            raise ValidationError('to', 'give the address(es) to release the mail to')
        service.release(rt, mail_id, to)
        return {'did': 'release'}

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

    @app.get('/search')
    @page(rt)
    def find():
        query = bottle.request.query
        by, value = query.getunicode('by') or 'recipient', query.getunicode('value') or ''
        found, error = None, None
        if value.strip():
            try:
                found = search.search(rt, {by: value, 'cursor': query.getunicode('cursor')})
            except ValidationError as exc:
                error = str(exc)
        return render(rt, 'search.html', by=by, value=value, found=found, error=error,
                      cursor=query.getunicode('cursor'))

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
        selected = None
        chosen = bottle.request.query.getunicode('id')
        if kind.name == 'outbox' and chosen:
            selected = admin.mail_detail(rt, chosen)
        return render(rt, 'list.html', kind=kind.name, listing=data, info=None,
                      title=kind.name.capitalize(), base=f'/{kind.name}', selected=selected)

    @app.get(f'/{kind.name}/rows', name=f'rows_{kind.name}')
    @page(rt)
    def rows():
        return fragment(rt, 'rows.html', kind=kind.name, base=f'/{kind.name}',
                        listing=admin.listing(rt, kind.name, *paging()))

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
    if kind is None or (kind.name == 'outbox' and not outbox_on(rt)):
        return '/'
    return f'/{kind.name}'
