"""The dashboard in a real browser: headless Chromium against the real web app,
a real worker process, Redis and the aiosmtpd server. Screenshots of every
page go to tests/artifacts/ for people to look at.
"""
import json
import time

import pytest

from mailq import service
from support.browser import chromium, new_page, screenshot
from support.ini import REPORT_JOB, smtp_section
from support.mailq_app import start_worker, stop_process
from support.procs import REPO_ROOT

pytestmark = pytest.mark.browser
USER, PASSWORD = 'admin', 's3cret'
SCRIPTED_HTML = ('<p id="marker">Hello from the mail</p>'
                 '<script>document.body.setAttribute("data-pwned", "script");'
                 'alert("pwned"); parent.document.title = "pwned";</script>'
                 '<img src="x" onerror="document.body.setAttribute(\'data-pwned\', \'onerror\')">')


@pytest.fixture(scope='module')
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def ini(tmp_ini, redis_url, smtp_server):
    return tmp_ini(
        redis={'url': redis_url},
        worker={'queues': 'mailers, default', 'concurrency': '2', 'retry_base': '3600',
                'scheduler_interval': '0.1'},
        smtp=smtp_section(smtp_server),
        web={'username': USER, 'password': PASSWORD},
        templates={'path': str(REPO_ROOT / 'templates' / 'mail')},
        **REPORT_JOB)


@pytest.fixture
def page(browser, app):
    tab = new_page(browser, app.url, USER, PASSWORD)
    yield tab
    tab.context.close()


def status_of(rt, mail_id):
    value = rt.redis.hget(rt.keys.record(mail_id), 'status')
    return value.decode() if value else None


def wait_for(predicate, what, timeout=15):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.05)


def test_every_page_and_action_with_a_real_worker(page, app, ini, smtp_server, artifacts):
    rt = app.runtime
    smtp_server.fail_rcpt('dead@example.com', 550, '5.1.1 No such user')
    smtp_server.fail_rcpt('later@example.com', 451, '4.2.0 Mailbox busy')
    worker = start_worker(ini, '-w', '2')
    try:
        dead = service.send(rt, {'to': 'dead@example.com', 'subject': 'Bounce me',
                                 'text': 'x'})['id']
        retrying = service.send(rt, {'to': 'later@example.com', 'subject': 'Try later',
                                     'text': 'x'})['id']
        scheduled = service.send(rt, {'to': 'tomorrow@example.com', 'subject': 'Scheduled',
                                      'text': 'x', 'delay': 86400})['id']
        wait_for(lambda: status_of(rt, dead) == 'dead' and status_of(rt, retrying) ==
                 'retrying', 'the dead and retrying mails')

        # Overview: the realtime chart polls /api/stats; the interval is remembered.
        page.goto('/')
        page.select_option('#poll-interval', '2')
        page.wait_for_selector('#realtime[data-polls="3"]', state='attached')
        screenshot(page, artifacts, 'overview')
        page.reload()
        assert page.input_value('#poll-interval') == '2'
        assert page.locator('[data-stat="dead"]').inner_text() == '1'
        assert 'appendonly yes' in page.inner_text('main')    # the test Redis keeps nothing

        page.goto('/busy')
        assert page.locator('table').first.inner_text().count('thread') == 1
        screenshot(page, artifacts, 'busy')

        # Pause a queue.
        page.goto('/queues')
        page.click('button[formaction="/queues/default/pause"]')
        page.wait_for_selector('.flash')
        assert 'Paused' in page.inner_text('.flash') and rt.redis.sismember(rt.keys.paused,
                                                                             'default')
        assert page.locator('button[formaction="/queues/default/resume"]').count() == 1
        screenshot(page, artifacts, 'queues')
        page.goto('/queues/mailers')
        screenshot(page, artifacts, 'queue')

        # Delete a scheduled mail.
        page.goto('/scheduled')
        screenshot(page, artifacts, 'scheduled')
        page.click(f'button[name="one"][value="{scheduled}"][formaction="/scheduled/delete"]')
        page.wait_for_selector('.flash')
        assert 'Deleted: 1 mail(s)' in page.inner_text('.flash')
        assert scheduled not in page.content() and status_of(rt, scheduled) is None

        page.goto('/retrying')
        assert 'Mailbox busy' in page.inner_text('table')
        screenshot(page, artifacts, 'retrying')

        # Retry a dead mail and see it delivered by the worker.
        page.goto('/dead')
        assert 'No such user' in page.inner_text('table')
        screenshot(page, artifacts, 'dead')
        # Its 550 5.1.1 put the address on the suppression list: take it off there first.
        smtp_server.fail_rcpt('dead@example.com', None)
        page.goto('/suppressed')
        assert 'dead@example.com' in page.inner_text('table')
        screenshot(page, artifacts, 'suppressed')
        page.click('form[action="/suppressed/remove"] button')
        page.wait_for_selector('.flash')
        assert 'dead@example.com' not in page.inner_text('main')
        page.goto('/dead')
        page.click(f'button[name="one"][value="{dead}"][formaction="/dead/retry"]')
        page.wait_for_selector('.flash')
        assert 'Retried: 1 mail(s)' in page.inner_text('.flash')
        received = smtp_server.wait_for(1)
        assert received[0].rcpt_tos == ['dead@example.com']
        wait_for(lambda: status_of(rt, dead) == 'sent', 'the retried mail to be sent')
        page.goto(f'/mails/{dead}')
        assert page.inner_text('.badge') == 'sent'
        assert '550' in page.inner_text('#attempts ~ .table-scroll table')
        screenshot(page, artifacts, 'mail')

        # Run a cron job now: its mail is delivered too.
        page.goto('/cron')
        screenshot(page, artifacts, 'cron')
        page.click('button[formaction="/cron/report/run"]')
        page.wait_for_selector('.flash')
        assert 'Run enqueued' in page.inner_text('.flash')
        assert page.dialogs == ['Remove dead@example.com from the list?', 'Run report now?']
        received = smtp_server.wait_for(2)
        assert received[1].rcpt_tos == ['ops@example.com']
        page.goto('/cron/report')
        assert 'ok' in page.inner_text('table:last-of-type')
        screenshot(page, artifacts, 'cron-job')

        page.goto('/outbox')
        screenshot(page, artifacts, 'outbox')

        # Quiet the worker: its heartbeat picks the command up.
        page.goto('/busy')
        page.click('button[formaction="/busy/quiet"][name="worker"]')
        page.wait_for_selector('.flash')
        deadline = time.monotonic() + 10
        while 'quiet' not in page.inner_text('table') and time.monotonic() < deadline:
            time.sleep(0.3)
            page.reload()
        assert 'quiet' in page.inner_text('table')
        assert page.console_errors == []       # the CSP blocks nothing of the dashboard's own
    finally:
        stop_process(worker)


def test_script_in_mail_html_does_not_run(page, app, artifacts):
    mail_id = service.send(app.runtime, {'to': 'ann@example.com', 'subject': 'Scripted',
                                         'text': 'plain part', 'html': SCRIPTED_HTML})['id']
    page.goto(f'/mails/{mail_id}')
    frame = page.frame_locator('iframe.mail-html')
    assert frame.locator('#marker').inner_text() == 'Hello from the mail'
    page.wait_for_timeout(300)      # give a script (that must not exist) a chance to run
    assert frame.locator('body').get_attribute('data-pwned') is None
    assert page.dialogs == [] and page.title() != 'pwned'
    assert page.get_attribute('iframe.mail-html', 'sandbox') == ''
    assert page.locator('#marker').count() == 0        # mail HTML is not in our own DOM
    assert 'plain part' in page.inner_text('pre.mail-text')
    screenshot(page, artifacts, 'mail-sandboxed')


def test_the_search_tab_finds_a_recipient_newest_first_and_pages_on(page, app, artifacts):
    """The Search tab reads the index: the mails to an address in any case, newest
    first, 25 a page with an 'older' link; a bad address is said on the page."""
    ids = [service.send(app.runtime, {'to': 'Zoe@Example.com', 'subject': f'Order {n}',
                                      'text': 'x'})['id'] for n in range(27)]
    service.send(app.runtime, {'to': 'other@example.com', 'subject': 'Not hers', 'text': 'x'})
    page.goto('/')
    page.click('nav >> text=Search')
    page.select_option('select[name="by"]', 'recipient')
    page.fill('input[name="value"]', 'ZOE@example.com')
    page.click('form.find button')
    rows = page.locator('#search-results tbody tr[data-id]')
    assert rows.count() == 25
    assert rows.first.get_attribute('data-id') == ids[-1]
    assert 'Not hers' not in page.inner_text('#search-results')
    screenshot(page, artifacts, 'search')
    page.click('a[rel="next"]')
    assert [rows.nth(i).get_attribute('data-id') for i in range(rows.count())] == \
        [ids[1], ids[0]]
    page.fill('input[name="value"]', 'not an address')
    page.click('form.find button')
    assert 'recipient' in page.inner_text('p.error')


def test_a_post_without_a_token_is_refused(page, app):
    rt = app.runtime
    mail_id = service.send(rt, {'to': 'ann@example.com', 'subject': 'Keep me', 'text': 'x',
                                'delay': 3600})['id']
    page.goto('/scheduled')
    page.evaluate('document.querySelectorAll("input[name=csrf]").forEach(e => e.remove())')
    page.click(f'button[name="one"][value="{mail_id}"][formaction="/scheduled/delete"]')
    assert 'CSRF' in page.inner_text('main') and page.inner_text('h1') == '403'
    status = page.evaluate('''id => fetch("/scheduled/delete", {method: "POST",
        body: new URLSearchParams({one: id})}).then(r => r.status)''', mail_id)
    assert status == 403
    api = page.evaluate('''() => fetch("/api/scheduled/delete", {method: "POST",
        headers: {"Content-Type": "application/json"}, body: JSON.stringify({all: true})})
        .then(r => r.json().then(body => [r.status, body.error]))''')
    assert api[0] == 403 and 'CSRF' in api[1]
    assert status_of(rt, mail_id) == 'scheduled'
    assert json.loads(rt.redis.zrange(rt.keys.schedule, 0, -1)[0])['args'] == [mail_id]


# -- round two: live pages, the mail catcher, charts, every page in four looks

def outbox_ini(tmp_ini, redis_url, smtp_server, **web):
    return tmp_ini(
        redis={'url': redis_url},
        worker={'queues': 'mailers, default', 'concurrency': '2', 'retry_base': '3600',
                'scheduler_interval': '0.1'},
        smtp={'transport': 'outbox', 'from': 'mailq@example.com',
              'release_host': '127.0.0.1', 'release_port': str(smtp_server.port)},
        web={'username': USER, 'password': PASSWORD, **web},
        templates={'path': str(REPO_ROOT / 'templates' / 'mail')}, **REPORT_JOB)


@pytest.fixture
def catcher(tmp_ini, redis_url, smtp_server):
    """A real `mailq web` process and a real worker, transport = outbox, a release relay."""
    from support.web_proc import WebProcess
    ini = outbox_ini(tmp_ini, redis_url, smtp_server)
    web = WebProcess(ini)
    worker = start_worker(ini, '-w', '2')
    from mailq.config import load
    from mailq.runtime import Runtime
    rt = Runtime(load(str(ini), environ={}))
    yield web, rt, ini
    stop_process(worker)
    web.stop()


def wide_page(browser, url, width=1400, scheme='light'):
    context = browser.new_context(base_url=url, viewport={'width': width, 'height': 900},
                                  color_scheme=scheme,
                                  http_credentials={'username': USER, 'password': PASSWORD})
    tab = context.new_page()
    tab.console_errors = []
    tab.on('console', lambda m: m.type == 'error' and tab.console_errors.append(m.text))
    tab.on('dialog', lambda d: d.accept())
    return tab


def test_a_mail_posted_while_the_outbox_is_open_appears_within_2_s(browser, catcher):
    web, rt, _ = catcher
    first = service.send(rt, {'to': 'ann@example.com', 'subject': 'Already here',
                              'text': 'x'})['id']
    wait_for(lambda: status_of(rt, first) == 'sent', 'the first mail')
    page = wide_page(browser, web.url)
    try:
        page.goto('/outbox')
        page.wait_for_selector('body[data-live="sse"]')
        assert page.locator('#rows-body tr.new').count() == 0
        posted = time.monotonic()
        status, _, body = web.request('POST', '/api/mails', {
            'to': 'bob@example.com', 'subject': 'Live arrival', 'text': 'x'},
            headers={'Authorization': _basic()})
        assert status == 202
        page.wait_for_selector(f'#rows-body tr.new[data-id="{body["id"]}"]', timeout=2000)
        took = time.monotonic() - posted
        assert took < 2.0
        assert page.locator(f'#rows-body tr[data-id="{first}"]').get_attribute('class') \
            in (None, '')                                    # the old row is not marked
        # The summary bar counts live: two processed now, without a reload.
        page.wait_for_selector('[data-stat="processed"]:text-is("2")', timeout=5000)
        assert page.console_errors == []
    finally:
        page.context.close()
    print(f'live arrival after {took * 1000:.0f} ms')


def test_the_outbox_falls_back_to_polling_when_no_stream_is_free(browser, tmp_ini, redis_url,
                                                                 smtp_server):
    from support.web_proc import WebProcess
    ini = outbox_ini(tmp_ini, redis_url, smtp_server, event_streams='0')
    web = WebProcess(ini)
    worker = start_worker(ini, '-w', '1')
    page = wide_page(browser, web.url)
    try:
        status, headers, body = web.request('GET', '/api/events',
                                            headers={'Authorization': _basic()})
        assert status == 503 and 'event_streams' in body['error']
        page.goto('/outbox')
        page.wait_for_selector('body[data-live="polling"]')
        web.request('POST', '/api/mails', {'to': 'c@example.com', 'subject': 'Polled',
                                           'text': 'x'}, headers={'Authorization': _basic()})
        page.wait_for_selector('#rows-body tr.new', timeout=12000)
        assert 'Polled' in page.inner_text('#rows-body tr.new')
    finally:
        page.context.close()
        stop_process(worker)
        web.stop()


def test_catcher_split_pane_keys_search_preview_links_and_release(browser, catcher,
                                                                  smtp_server, artifacts):
    web, rt, _ = catcher
    html = ('<p>Hi</p><a href="https://example.com/ok">fine</a> '
            '<a href="http://example.com/plain">plain</a> <a href="/relative">rel</a>')
    ids = [service.send(rt, {'to': f'u{i}@example.com', 'subject': f'Mail {i}',
                             'text': f'text {i} https://example.com/t{i}', 'html': html,
                             'attachments': [{'filename': 'a.txt', 'content': 'aGk=',
                                              'content_type': 'text/plain'}]})['id']
           for i in range(3)]
    wait_for(lambda: all(status_of(rt, i) == 'sent' for i in ids), 'three caught mails')
    page = wide_page(browser, web.url)
    try:
        page.goto('/outbox')
        assert page.locator('#pane').is_visible()            # 1,400 px: split pane
        # Newest first: the order the worker threads happened to finish them in.
        order = page.locator('#rows-body tr[data-id]').evaluate_all(
            'rows => rows.map(r => r.dataset.id)')
        assert sorted(order) == sorted(ids)
        page.keyboard.press('j')
        page.wait_for_selector(f'#pane .pane-mail[data-id="{order[0]}"]')
        page.keyboard.press('j')
        page.wait_for_selector(f'#pane .pane-mail[data-id="{order[1]}"]')
        page.keyboard.press('k')
        page.wait_for_selector(f'#pane .pane-mail[data-id="{order[0]}"]')
        assert page.locator('#rows-body tr.selected').get_attribute('data-id') == order[0]
        # Previews at phone, tablet and desktop widths, in the sandbox as before.
        frame = page.locator('#pane iframe.mail-html')
        assert frame.get_attribute('sandbox') == ''
        for width in (375, 768, 1200):
            page.click(f'#pane button[data-width="{width}"]')
            assert round(frame.bounding_box()['width']) == width
        assert page.frame_locator('#pane iframe.mail-html').locator('p').inner_text() == 'Hi'
        # Links: the two that are not absolute https are flagged.
        page.click('#pane .parts-nav a[data-part="links"]')
        flagged = page.locator('#pane .links li.flagged').all_inner_texts()
        assert len(flagged) == 2 and any('not https' in f for f in flagged) \
            and any('relative' in f for f in flagged)
        assert page.locator('#pane .links li.ok').count() == 2   # html https + text https
        for part, words in (('text', f'text {ids.index(order[0])}'), ('headers', 'Message-ID'),
                            ('raw', 'Content-Type'), ('attachments', 'a.txt')):
            page.click(f'#pane .parts-nav a[data-part="{part}"]')
            assert words in page.locator(f'#pane section[data-part="{part}"]').inner_text()
        screenshot(page, artifacts, 'outbox-pane-1400-light')
        # "/" focuses the search, which finds as you type.
        page.keyboard.press('/')
        assert page.evaluate('document.activeElement.type') == 'search'
        page.keyboard.type('Mail 1')
        wait_for(lambda: page.locator('#rows-body tr[data-id]').count() == 1, 'the search',
                 timeout=5)
        assert page.locator('#rows-body tr[data-id]').get_attribute('data-id') == ids[1]
        # Release the selected mail to a real address.
        page.goto(f'/outbox?id={ids[0]}')
        page.fill('#pane input[name="to"]', 'qa@example.com')
        page.click('#pane .release-form button')
        page.wait_for_selector('.flash')
        assert 'Released' in page.inner_text('.flash')
        received = smtp_server.wait_for(1)
        assert received[0].rcpt_tos == ['qa@example.com']
        assert b'Resent-To: qa@example.com' in received[0].data
        assert status_of(rt, ids[0]) == 'sent'            # the caught original stays
        copy = service.get_mail(rt, ids[0])['releases'][0]['id']
        wait_for(lambda: status_of(rt, copy) == 'sent', 'the released copy')
        assert page.console_errors == []
    finally:
        page.context.close()


def test_a_chart_tooltip_shows_the_figure_the_api_reports(browser, catcher):
    web, rt, _ = catcher
    for i in range(3):
        service.send(rt, {'to': f'c{i}@example.com', 'subject': 'Count me', 'text': 'x',
                          'queue': 'default' if i else 'mailers'})
    wait_for(lambda: service.stats(rt)['processed'] == 3, 'three deliveries')
    status, _, body = web.request('GET', '/api/stats/history?days=7',
                                  headers={'Authorization': _basic()})
    today = body['days'][-1]
    assert today['sent'] == 3 and today['queues'] == {'mailers': 1, 'default': 2}
    page = wide_page(browser, web.url)
    try:
        page.goto('/?days=7')
        axis = page.locator('#history-outcome .x-axis text').all_text_contents()
        assert len(axis) >= 4 and all(label[:3] in dashboard_months() for label in axis)
        assert page.locator('#history-outcome .y-axis text').first.text_content() == '0'
        point = page.locator(f'#history-outcome rect.point[data-day="{today["day"]}"]')
        point.hover()
        tip = page.locator('#tip-outcome')
        assert tip.is_visible()
        assert tip.inner_text().startswith(f'{today["day"]}: {today["processed"]} processed')
        assert f'sent {today["sent"]}' in tip.inner_text()
        # Keyboard: focus the queue chart's last day, then step left with the arrow key.
        page.locator(f'#history-queue rect.point[data-day="{today["day"]}"]').focus()
        queue_tip = page.locator('#tip-queue')
        assert 'mailers 1 · default 2' in queue_tip.inner_text()
        page.keyboard.press('ArrowLeft')
        yesterday = body['days'][-2]
        assert queue_tip.inner_text().startswith(f'{yesterday["day"]}: 0 processed')
        for days in (30, 90, 180):
            page.goto(f'/?days={days}')
            assert page.locator('#history-outcome rect.point').count() == days
    finally:
        page.context.close()


def dashboard_months():
    from mailq.web.dashboard import MONTHS
    return MONTHS


def _basic():
    import base64
    return 'Basic ' + base64.b64encode(f'{USER}:{PASSWORD}'.encode()).decode()


PAGES = ('/', '/busy', '/queues', '/queues/mailers', '/scheduled', '/retrying', '/dead',
         '/cron', '/cron/report', '/outbox', '/suppressed')


def test_screenshots_of_every_page_at_1400_and_390_px_light_and_dark(browser, catcher,
                                                                      artifacts):
    """Every page in four looks, kept in tests/artifacts/; at 390 px nothing makes the
    page itself scroll sideways (wide tables scroll inside their box)."""
    web, rt, _ = catcher
    mail_id = service.send(rt, {'to': 'a-rather-long-address@example.com',
                                'subject': 'A subject long enough to wrap on a phone screen',
                                'text': 'x', 'html': '<p>Hello</p>'})['id']
    service.send(rt, {'to': 'later@example.com', 'subject': 'Later', 'text': 'x',
                      'delay': 3600})
    wait_for(lambda: status_of(rt, mail_id) == 'sent', 'a caught mail')
    taken = 0
    for width in (1400, 390):
        for scheme in ('light', 'dark'):
            page = wide_page(browser, web.url, width, scheme)
            try:
                for path in PAGES + (f'/mails/{mail_id}', f'/outbox?id={mail_id}'):
                    page.goto(path)
                    overflow = page.evaluate('document.documentElement.scrollWidth - '
                                             'document.documentElement.clientWidth')
                    assert overflow <= 1, f'{path} at {width} px scrolls sideways by {overflow}'
                    bg = page.evaluate('getComputedStyle(document.body).backgroundColor')
                    assert (bg == 'rgb(18, 22, 29)') == (scheme == 'dark'), (path, bg)
                    name = (path.strip('/').replace('/', '-').replace('?id=', '-selected-')
                            .replace(mail_id, 'mail') or 'overview')
                    screenshot(page, artifacts, f'{name}-{width}-{scheme}')
                    taken += 1
                assert page.console_errors == []
            finally:
                page.context.close()
    assert taken == 4 * (len(PAGES) + 2)
