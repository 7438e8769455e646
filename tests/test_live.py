"""GET /api/events with [web] processes = 2: every process serves live streams, and each
stream hears of a mail whichever process (or program) accepted it."""
import base64
import http.client
import json
import threading
import time

from support.ini import smtp_section
from support.procs import REPO_ROOT
from support.web_proc import WebProcess

AUTH = {'Authorization': 'Basic ' + base64.b64encode(b'admin:s3cret').decode()}


def read_events(port, found, stop):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    conn.request('GET', '/api/events', headers=AUTH)
    resp = conn.getresponse()
    found.append(('status', resp.status))
    kind = None
    while not stop.is_set():
        line = resp.fp.readline().decode()
        if line.startswith('event: '):
            kind = line[7:].strip()
        elif line.startswith('data: '):
            found.append((kind, json.loads(line[6:])))
    conn.close()


def test_every_web_process_serves_events_of_mail_taken_by_any(tmp_ini, redis_url,
                                                             smtp_server):
    ini = tmp_ini(redis={'url': redis_url}, smtp=smtp_section(smtp_server),
                  web={'username': 'admin', 'password': 's3cret', 'processes': '2',
                       'threads': '4', 'event_streams': '3'},
                  templates={'path': str(REPO_ROOT / 'templates' / 'mail')})
    web = WebProcess(ini)
    stop, streams, threads = threading.Event(), [], []
    try:
        # SO_REUSEPORT spreads connections over the two processes; open streams until
        # both have one (each says which process serves it).
        deadline = time.monotonic() + 20
        while len({s[1][1]['process'] for s in streams if len(s) > 1}) < 2:
            assert time.monotonic() < deadline, 'all streams went to one process'
            found = []
            thread = threading.Thread(target=read_events, args=(web.port, found, stop),
                                      daemon=True)
            thread.start()
            threads.append(thread)
            while len(found) < 2 and found[:1] != [('status', 503)] \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            if found[:1] == [('status', 503)]:
                continue        # that process has its event_streams already: try again
            streams.append(found)
            assert len(streams) <= 6, 'more streams than two processes should need'
        assert all(s[0] == ('status', 200) for s in streams)
        status, _, body = web.request('POST', '/api/mails', {
            'to': 'ann@example.com', 'subject': 'heard everywhere', 'text': 'x'}, headers=AUTH)
        assert status == 202
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not all(
                any(k == 'mail' and e.get('id') == body['id'] for k, e in s[1:])
                for s in streams):
            time.sleep(0.05)
        for s in streams:
            mails = [e for k, e in s[1:] if k == 'mail']
            assert {'id': body['id'], 'status': 'queued', 'new': True, 'type': 'mail'} in mails
    finally:
        stop.set()
        web.stop()
