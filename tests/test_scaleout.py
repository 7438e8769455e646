"""Scale-out on one machine: 3 worker processes and 2 web processes against one Redis.

Mails posted alternately to both webs are each delivered exactly once, and one
scrape of either web shows the whole cluster.
"""
import json
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from support.mailq_app import start_worker
from support.procs import (PYTHON, REPO_ROOT, free_port, read_log, start_process, stop_process,
                           wait_http)

MAILS = 150


def start_web(ini):
    port = free_port()
    proc = start_process([PYTHON, REPO_ROOT / 'mailq.py', 'web', '-c', ini, '--port', port])
    wait_http(f'http://127.0.0.1:{port}/healthz', timeout=20)
    return proc, f'http://127.0.0.1:{port}'


def post(base, body):
    req = urllib.request.Request(base + '/api/mails', data=json.dumps(body).encode(),
                                 headers={'Content-Type': 'application/json'}, method='POST')
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
        return json.loads(resp.read())['id']


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        return resp.read().decode()


def gauge(base, name):
    for family in text_string_to_metric_families(get(base, '/metrics')):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def sent_records(base, ids, timeout=20):
    """Every mail's record, once all are sent (outcomes are recorded just after the 250)."""
    deadline = time.monotonic() + timeout
    while True:
        records = {i: json.loads(get(base, f'/api/mails/{i}')) for i in ids}
        unsent = [i for i, r in records.items() if r['status'] != 'sent']
        if not unsent:
            return records
        assert time.monotonic() < deadline, f'{len(unsent)} mails not recorded as sent'
        time.sleep(0.2)


def test_three_workers_two_webs_deliver_each_mail_once(mailq_ini, redis_client, smtp_server):
    workers = [start_worker(mailq_ini, '-w', '4') for _ in range(3)]
    webs = []
    try:
        webs = [start_web(mailq_ini) for _ in range(2)]
        deadline = time.monotonic() + 20
        while redis_client.zcard('mailq:workers') < 3:
            assert time.monotonic() < deadline, 'not all 3 workers beat'
            time.sleep(0.1)
        bases = [base for _, base in webs]
        ids = [post(bases[i % 2], {'to': f'user{i}@example.com', 'subject': f'n{i}',
                                   'text': 'scale-out'}) for i in range(MAILS)]
        smtp_server.wait_for(MAILS, timeout=60)      # raises unless all MAILS arrive
        records = sent_records(bases[1], ids)
        assert gauge(bases[0], 'mailq_workers') == 3          # one scrape, whole cluster
        assert gauge(bases[1], 'mailq_processed_total') == MAILS
    finally:
        for proc, _ in webs:
            stop_process(proc)
        codes = [stop_process(w) for w in workers]
    assert codes == [0, 0, 0], [read_log(w)[-2000:] for w in workers]

    received = [m.message_id for m in smtp_server.messages]
    assert len(received) == len(set(received)) == MAILS               # none twice
    assert set(received) == {r['message_id'] for r in records.values()}  # none missing
    by_worker = {}
    for record in records.values():
        [attempt] = record['history']
        by_worker[attempt['worker']] = by_worker.get(attempt['worker'], 0) + 1
    assert len(by_worker) == 3, by_worker     # every worker process took a share
