"""A real Django sends through mailq two ways: its own SMTP backend to the submission
listener, and mailq.django.EmailBackend through the Python API."""
import email
import email.policy

import pytest

django = pytest.importorskip('django')
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(DEFAULT_CHARSET='utf-8', EMAIL_TIMEOUT=10)
    django.setup()
from django.core import mail  # noqa: E402

from mailq.config import load  # noqa: E402
from mailq.errors import Unavailable  # noqa: E402
from mailq.runtime import Runtime  # noqa: E402
from support.procs import free_port  # noqa: E402
from support.submission import SubmissionProcess, stored  # noqa: E402


@pytest.fixture
def ini(redis_ini):
    return redis_ini


def rich_message(connection):
    msg = mail.EmailMultiAlternatives(
        subject='Your invoice €', body='Plain text.', from_email='Shop <shop@example.com>',
        to=['Ann <ann@example.com>'], cc=['cc@example.com'], bcc=['audit@example.com'],
        reply_to=['help@example.com'], headers={'X-Mailq-Queue': 'default',
                                                'X-Order': '42'},
        connection=connection)
    msg.attach_alternative('<p>HTML</p>', 'text/html')
    msg.attach('invoice.pdf', b'%PDF-1.4 binary \x00\xff', 'application/pdf')
    return msg


def test_mailq_backend_keeps_the_message_as_django_made_it(ini, redis_client):
    connection = mail.get_connection('mailq.django.EmailBackend', config=str(ini))
    assert rich_message(connection).send() == 1
    [mail_id] = stored(redis_client)
    record = Runtime(load(str(ini), environ={})).store.get(mail_id, with_raw=True)
    assert record.fields['source'] == 'django' and record.fields['queue'] == 'default'
    assert record.envelope == {'from': 'shop@example.com', 'rcpts': [
        'ann@example.com', 'cc@example.com', 'audit@example.com']}
    assert b'audit@example.com' not in record.raw and b'X-Mailq' not in record.raw
    msg = email.message_from_bytes(record.raw, policy=email.policy.default)
    assert msg['Subject'] == 'Your invoice €' and msg['X-Order'] == '42'
    assert msg['Reply-To'] == 'help@example.com'
    assert msg.get_body(('html',)).get_content() == '<p>HTML</p>'
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == 'invoice.pdf'
    assert attachment.get_content() == b'%PDF-1.4 binary \x00\xff'


def test_mailq_backend_fail_silently(tmp_ini):
    down = tmp_ini('down.ini', redis={'url': f'redis://127.0.0.1:{free_port()}/0'})
    loud = mail.get_connection('mailq.django.EmailBackend', config=str(down))
    with pytest.raises(Unavailable):
        mail.send_mail('s', 'b', 'shop@example.com', ['ann@example.com'], connection=loud)
    quiet = mail.get_connection('mailq.django.EmailBackend', config=str(down),
                                fail_silently=True)
    assert mail.send_mail('s', 'b', 'shop@example.com', ['ann@example.com'],
                          connection=quiet) == 0


def test_django_smtp_backend_to_the_listener(tmp_ini, redis_url, redis_client):
    """Only the settings change: EMAIL_HOST/PORT/USER/PASSWORD point at mailq."""
    port = free_port()
    ini = tmp_ini('sub.ini', redis={'url': redis_url}, submission={
        'enabled': 'yes', 'port': port, 'username': 'app', 'password': 'pw'})
    sub = SubmissionProcess(ini, port)
    try:
        connection = mail.get_connection('django.core.mail.backends.smtp.EmailBackend',
                                         host='127.0.0.1', port=port, username='app',
                                         password='pw', timeout=10)
        assert rich_message(connection).send() == 1
    finally:
        sub.stop()
    [mail_id] = stored(redis_client)
    record = Runtime(load(str(ini), environ={})).store.get(mail_id, with_raw=True)
    assert (record.fields['source'], record.fields['user']) == ('smtp', 'app')
    assert record.envelope['rcpts'] == ['ann@example.com', 'cc@example.com',
                                        'audit@example.com']
    msg = email.message_from_bytes(record.raw, policy=email.policy.default)
    assert len(list(msg.iter_attachments())) == 1 and record.fields['queue'] == 'default'
