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
        assert '550' in page.inner_text('#attempts ~ table') or '550' in page.content()
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
