"""Drift between two views of the same thing, found before the data-layer refactor.

These tests fail on the code as it was when they were written (see each docstring for
the reason); the refactor is to make them pass. They are not marked xfail on purpose.
"""
import re
import threading
import time

import redis
from prometheus_client.parser import text_string_to_metric_families

from support.mailq_app import stop_process
from support.procs import REPO_ROOT, read_log
from support.latency_proxy import LatencyProxy
from support.redis_tuned import TunedRedisServer
from support.web_proc import WebProcess

LATENCY_TOLERANCE = 0.5     # seconds; the two reads are a few milliseconds apart


def samples_of(text):
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def metric(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_until(predicate, what, timeout=20, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(interval)


def mail(web, mail_id):
    status, _, body = web.get(f'/api/mails/{mail_id}')
    assert status == 200, body
    return body


def make_dead(web, to):
    status, _, reply = web.post('/api/mails', {'to': to, 'subject': 'drift', 'text': 'x'})
    assert status == 202, reply
    wait_until(lambda: mail(web, reply['id'])['status'] == 'dead', f'{to} to go dead')
    return reply['id']


# -- a. queue latency: dashboard and /metrics ----------------------------------------

def test_queue_latency_agrees_between_dashboard_and_metrics(web, worker, smtp_server):
    """GET /api/queues and /metrics give the same latency per queue, also for a mail that
    went back on its queue from Dead. Today admin.queues() counts from the mail's
    `queued_at` (when the retry put it on the queue) and metrics.snapshot() ignores it,
    so /metrics shows the age since the mail was created."""
    smtp_server.fault_for('gone@example.com', reply='550 5.1.1 No such user', times=100)
    dead_id = make_dead(web, 'gone@example.com')
    assert web.post('/api/queues/mailers/pause')[0] == 200
    time.sleep(4)        # the dead mail ages; then it goes back on its (paused) queue
    status, _, reply = web.post('/api/dead/retry', {'ids': [dead_id]})
    assert status == 200 and reply['done'] == 1, reply
    assert mail(web, dead_id)['status'] == 'queued'
    time.sleep(1)        # it has now waited 1 s on its queue

    status, _, body = web.get('/api/queues')
    assert status == 200, body
    dashboard = {q['name']: q['latency'] for q in body['queues']}
    status, _, text = web.get('/metrics')
    assert status == 200, text
    scraped = {name: metric(samples_of(text), 'mailq_queue_latency_seconds', queue=name)
               for name in dashboard}
    assert 0.9 <= dashboard['mailers'] < 3, dashboard     # since it was put back, not created
    for name in dashboard:
        assert abs(dashboard[name] - scraped[name]) <= LATENCY_TOLERANCE, \
            f'queue {name}: dashboard latency {dashboard[name]} s, /metrics {scraped[name]} s'
    # the Queues tab itself shows it in whole seconds ('1 s'), from the same reading
    status, _, html = web.get('/queues')
    assert status == 200, html
    shown = re.search(r'href="/queues/mailers">mailers</a></td>\s*<td[^>]*>[^<]*</td>\s*'
                      r'<td[^>]*>([\d.]+) s</td>', html)
    assert shown and abs(float(shown.group(1)) - scraped['mailers']) <= 0.5 + LATENCY_TOLERANCE, \
        (shown and shown.group(0), scraped['mailers'])


# -- b. /metrics while Redis is BUSY or LOADING --------------------------------------

def scrape_text(web):
    import http.client
    conn = http.client.HTTPConnection('127.0.0.1', web.port, timeout=30)
    try:
        conn.request('GET', '/metrics')
        resp = conn.getresponse()
        return resp.status, resp.read().decode('utf-8', 'replace')
    finally:
        conn.close()


def redis_reply(client):
    """'ok', or the kind of refusal ('busy', 'loading') this Redis answers PING with."""
    try:
        client.ping()
        return 'ok'
    except redis.exceptions.BusyLoadingError:
        return 'loading'
    except redis.exceptions.ResponseError as exc:
        return 'busy' if str(exc).startswith('BUSY') else str(exc)
    except redis.exceptions.ConnectionError as exc:
        return f'connection error: {exc}'


def scrape_outcome(web):
    """(status, mailq_redis_up or None, first line of the body) of one scrape."""
    status, text = scrape_text(web)
    up = metric(samples_of(text), 'mailq_redis_up') if status == 200 else None
    return status, up, text.strip().splitlines()[0] if text.strip() else ''


def metrics_web(tmp_ini, server):
    ini = tmp_ini(f'metrics-{server.port}.ini', redis={'url': server.url},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    web = WebProcess(ini)
    status, text = scrape_text(web)
    assert status == 200 and metric(samples_of(text), 'mailq_redis_up') == 1, text[:500]
    return web


def test_metrics_scrape_while_redis_is_busy_or_loading(tmp_ini, tmp_path):
    """A scrape while Redis answers BUSY (a script past busy-reply-threshold) or LOADING
    (replaying its RDB after a restart) is a Redis outage for /metrics: 200 with
    mailq_redis_up 0, as for a Redis that is down. Today ClusterCollector only catches
    ConnectionError and TimeoutError, so BUSY (a ResponseError) is a 500. LOADING already
    gives mailq_redis_up 0 today (redis-py's BusyLoadingError is a ConnectionError); that
    half guards the refactor."""
    # BUSY: an endless EVAL from another connection
    (tmp_path / 'busy').mkdir()
    busy = TunedRedisServer('--busy-reply-threshold', '100', tmpdir=tmp_path / 'busy').start()
    web = metrics_web(tmp_ini, busy)
    outcomes, logs = {}, {}
    blocker = busy.client(socket_timeout=None)
    outcome = {}

    def endless():
        try:
            blocker.eval('while true do end', 0)
        except redis.RedisError as exc:
            outcome['error'] = str(exc)

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    probe = busy.client(socket_timeout=5)
    try:
        wait_until(lambda: redis_reply(probe) == 'busy', 'Redis to answer BUSY')
        outcomes['BUSY'] = scrape_outcome(web)
        assert redis_reply(probe) == 'busy'        # still busy after the scrape
        if outcomes['BUSY'][0] != 200:
            logs['BUSY'] = read_log(web.proc)[-1500:]
    finally:
        try:
            probe.script_kill()
        except redis.RedisError:
            pass
        thread.join(10)
        web.stop()
        busy.cleanup()
    assert 'killed' in outcome.get('error', '').lower(), outcome   # SCRIPT KILL ended it

    # LOADING: restart on a large RDB, loaded slowly (key-load-delay µs per key)
    (tmp_path / 'loading').mkdir()
    loading = TunedRedisServer('--enable-debug-command', 'yes', rdb=True,
                               tmpdir=tmp_path / 'loading').start()
    client = loading.client()
    client.execute_command('DEBUG', 'POPULATE', 100000, 'filler', 16)
    client.save()
    client.close()
    web = metrics_web(tmp_ini, loading)
    try:
        loading.stop()
        loading.extra = ['--key-load-delay', '100',      # 100,000 keys: about 10 s to load
                         '--loading-process-events-interval-bytes', '1024']
        loading.start(wait=False)
        probe = loading.client(socket_timeout=5)
        wait_until(lambda: redis_reply(probe) == 'loading', 'Redis to answer LOADING')
        started = time.monotonic()
        outcomes['LOADING'] = scrape_outcome(web)
        took = time.monotonic() - started
        assert redis_reply(probe) == 'loading', \
            f'the scrape ({took:.1f} s) outlasted the load window: make the RDB bigger'
        if outcomes['LOADING'][0] != 200:
            logs['LOADING'] = read_log(web.proc)[-1500:]
    finally:
        web.stop()
        loading.kill()
        loading.cleanup()

    assert {what: (status, up) for what, (status, up, _) in outcomes.items()} == \
        {'BUSY': (200, 0), 'LOADING': (200, 0)}, \
        (f'/metrics must answer 200 with mailq_redis_up 0; got {outcomes} '
         '(what: (status, mailq_redis_up, first body line))\n'
         + '\n'.join(f'--- web log, {what} ---\n{log}' for what, log in logs.items()))


# -- c. "Retry all" on Dead -------------------------------------------------------

WEB_REDIS_DELAY = 0.003     # seconds added each way between the web and Redis
RETRY_ALL_TIMEOUT = 10


def test_dead_retry_all_acts_on_each_mail_once(tmp_ini, redis_server, redis_url, worker,
                                               smtp_server):
    """POST /api/dead/retry {"all": true} with one dead mail retries it once: done 1 and
    one new attempt. Today _act_on_all() reads the Dead set again after each chunk; a
    worker that fails the mail again (a 5xx at once) before that read has put it back,
    so it is retried again, and again, as long as the worker keeps winning the race
    (done 2 or more, attempts milliseconds apart; with a slower web, a loop that does
    not end while the worker keeps up).

    The web reaches Redis through a proxy that adds 3 ms each way (a web host a little
    away from Redis, as across zones); the worker is next to Redis. That makes the window
    between the retry and the re-read (one round trip of the web) mostly longer than the
    worker's whole attempt; five rounds make the test fail reliably today. (With 10 ms,
    the request did not end within 10 s; without the proxy, 15 rounds all passed.)"""
    smtp_server.fault_for('gone@example.com', reply='550 5.1.1 No such user', times=1000)
    with LatencyProxy(redis_server.port, WEB_REDIS_DELAY) as proxy:
        ini = tmp_ini('far-web.ini', redis={'url': f'redis://127.0.0.1:{proxy.port}/0'},
                      worker={'queues': 'mailers, default'},
                      templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
        web = WebProcess(ini)
        try:
            _retry_all_rounds(web, smtp_server)
        finally:
            web.stop()
    assert stop_process(worker) == 0, read_log(worker)


def _retry_all_rounds(web, smtp_server):
    def get(mail_id):
        status, _, body = web.request('GET', f'/api/mails/{mail_id}')
        assert status == 200, body
        return body

    status, _, reply = web.request('POST', '/api/mails', {'to': 'gone@example.com',
                                                          'subject': 'drift', 'text': 'x'})
    assert status == 202, reply
    dead_id = reply['id']
    wait_until(lambda: get(dead_id)['status'] == 'dead', 'the mail to go dead')
    for round_ in range(1, 6):     # a few rounds: each must act exactly once
        before = len(get(dead_id)['history'])
        transactions = smtp_server.transactions
        started = time.monotonic()
        try:
            status, _, reply = web.request('POST', '/api/dead/retry', {'all': True},
                                           timeout=RETRY_ALL_TIMEOUT)
        except TimeoutError:
            status, reply = None, f'no answer within {RETRY_ALL_TIMEOUT} s'
        took = time.monotonic() - started
        if status is not None:
            assert status == 200, reply
            wait_until(lambda: get(dead_id)['status'] == 'dead', 'the mail to go dead again')
            time.sleep(0.5)        # a second attempt, if any, has happened by now
        history = get(dead_id)['history']
        new = [(a['at'], a['outcome'], a['code']) for a in history[before:]]
        shown = new if len(new) <= 4 else new[:2] + ['...'] + new[-2:]
        assert status == 200 and reply['done'] == 1 and len(new) == 1, \
            (f'round {round_}: retry all answered {reply} after {took:.1f} s; '
             f'{len(new)} new attempts: {shown}')
        assert smtp_server.transactions == transactions + 1, round_
