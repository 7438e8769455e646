"""GET /metrics, parsed with prometheus_client's own parser, against real workers."""
import base64
import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mailq.metrics import snapshot
from support.mailq_app import WebApp, start_worker, stop_process
from support.procs import read_log


def scrape(web, headers=None):
    status, resp_headers, body = web.get('/metrics', headers=headers)
    assert status == 200, body
    assert resp_headers['Content-Type'].startswith('text/plain; version=')
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_scrape(web, ready, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(web)
        if ready(samples):
            return samples
        assert time.monotonic() < deadline, f'metrics never got there: {samples}'
        time.sleep(0.2)


def send(web, to, queue=None):
    body = {'to': to, 'subject': 'metrics', 'text': 'hello'}
    if queue:
        body['queue'] = queue
    status, _, reply = web.post('/api/mails', body)
    assert status == 202, reply
    return reply['id']


def test_outcomes_code_classes_and_durations(web, mailq_ini, smtp_server):
    smtp_server.fail_rcpt('gone@example.com', 550, 'No such user')
    smtp_server.fail_rcpt('later@example.com', 451, 'Try later')
    worker = start_worker(mailq_ini, '-w', '2')
    try:
        for to in ('ok@example.com', 'gone@example.com', 'later@example.com'):
            send(web, to)
        wait_scrape(web, lambda s: value(s, 'mailq_deliveries_total', outcome='sent',
                                         code_class='2xx') == 1
                    and value(s, 'mailq_deliveries_total', outcome='dead', code_class='5xx') == 1
                    and (value(s, 'mailq_deliveries_total', outcome='retrying',
                               code_class='4xx') or 0) >= 1
                    and value(s, 'mailq_workers') == 1)
    finally:
        assert stop_process(worker) == 0, read_log(worker)

    s = scrape(web)   # the worker is gone: nothing moves any more
    attempts = value(s, 'mailq_processed_total')
    by_outcome = sum(v for (name, _), v in s.items() if name == 'mailq_deliveries_total')
    assert by_outcome == attempts >= 3
    assert value(s, 'mailq_failed_total') == attempts - 1
    assert value(s, 'mailq_delivery_duration_seconds_count') == attempts
    assert value(s, 'mailq_delivery_duration_seconds_bucket', le='+Inf') == attempts
    buckets = sorted((float(dict(labels)['le']), v) for (name, labels), v in s.items()
                     if name == 'mailq_delivery_duration_seconds_bucket')
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)   # cumulative
    assert value(s, 'mailq_delivery_duration_seconds_sum') > 0
    assert value(s, 'mailq_mails', state='dead') == 1
    assert value(s, 'mailq_mails', state='retrying') + value(s, 'mailq_mails', state='queued') == 1
    assert value(s, 'mailq_workers') == 0 and value(s, 'mailq_busy_workers') == 0
    assert value(s, 'mailq_redis_up') == 1


def test_busy_workers_and_sending_state(web, mailq_ini, smtp_server):
    smtp_server.delay_data(3)
    worker = start_worker(mailq_ini, '-w', '3')
    try:
        send(web, 'slow@example.com')
        s = wait_scrape(web, lambda s: value(s, 'mailq_busy_workers') == 1)
        assert value(s, 'mailq_mails', state='sending') == 1
        assert value(s, 'mailq_worker_threads') == 3
    finally:
        smtp_server.delay_data(0)
        stop_process(worker)


def test_queue_size_latency_and_paused(web, redis_client):
    first = send(web, 'a@example.com', queue='default')
    send(web, 'b@example.com', queue='default')
    redis_client.sadd('mailq:paused', 'default')
    s = scrape(web)
    assert value(s, 'mailq_queue_size', queue='default') == 2
    assert value(s, 'mailq_queue_size', queue='mailers') == 0
    assert value(s, 'mailq_queue_paused', queue='default') == 1
    assert value(s, 'mailq_mails', state='queued') == 2
    created = float(redis_client.hget(f'mailq:m:{first}', 'created_at'))
    snap = snapshot(web.runtime, now=created + 90)
    assert 89 < snap['queues']['default']['latency'] <= 90   # the oldest mail, not the newest
    assert snap['queues']['mailers']['latency'] == 0


def test_metrics_need_auth_when_configured(tmp_ini, redis_url):
    ini = tmp_ini('auth.ini', redis={'url': redis_url},
                  web={'username': 'prom', 'password': 'scrape-secret'})
    web = WebApp(ini)
    try:
        status, headers, _ = web.get('/metrics')
        assert status == 401 and 'Basic' in headers['WWW-Authenticate']
        token = base64.b64encode(b'prom:scrape-secret').decode()
        s = scrape(web, headers={'Authorization': f'Basic {token}'})
        assert value(s, 'mailq_redis_up') == 1
    finally:
        web.close()


def test_redis_down_is_a_metric_not_an_error(tmp_ini):
    web = WebApp(tmp_ini('down.ini', redis={'url': 'redis://127.0.0.1:1/0'}))
    try:
        s = scrape(web)
        assert value(s, 'mailq_redis_up') == 0
        assert value(s, 'mailq_queue_size', queue='mailers') is None
    finally:
        web.close()


@pytest.mark.parametrize('code,outcome,expected', [
    (250, 'sent', 'sent:2xx'), (451, 'retrying', 'retrying:4xx'), (550, 'dead', 'dead:5xx'),
    (0, 'retrying', 'retrying:none'), (None, 'dead', 'dead:none')])
def test_code_classes(code, outcome, expected):
    from mailq.store import delivery_metric_fields
    field, le, _ = delivery_metric_fields({'code': code, 'outcome': outcome, 'duration': 0.3})
    assert field == expected and le == '0.5'


def test_cron_last_success_and_paused(tmp_ini, redis_url):
    from mailq.cron import jobs
    ini = tmp_ini('cron.ini', redis={'url': redis_url},
                  **{'cron:daily': {'schedule': '0 8 * * *', 'template': 'daily_report',
                                    'to': 'team@example.com'},
                     'cron:weekly': {'schedule': '0 8 * * mon', 'template': 'daily_report',
                                     'to': 'team@example.com'}})
    web = WebApp(ini)
    try:
        before = scrape(web)
        assert value(before, 'mailq_cron_last_success_timestamp_seconds', job='daily') == 0
        run = jobs.run_now(web.runtime, 'daily')
        jobs.pause(web.runtime, 'weekly')
        after = scrape(web)
    finally:
        web.close()
    assert run['outcome'] == 'ok'
    enqueued = web.runtime.redis.lindex('mailq:cron:daily:runs', 0)
    assert value(after, 'mailq_cron_last_success_timestamp_seconds', job='daily') == \
        json.loads(enqueued)['enqueued_at'] > 0
    assert value(after, 'mailq_cron_last_success_timestamp_seconds', job='weekly') == 0
    assert value(after, 'mailq_cron_paused', job='weekly') == 1
    assert value(after, 'mailq_cron_paused', job='daily') == 0
