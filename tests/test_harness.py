"""The harness itself must be trustworthy before anything is tested with it."""
import configparser
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage

import pytest

from support.procs import free_port
from support.redis_server import RedisServer


def make_message(n=1):
    msg = EmailMessage()
    msg['From'] = 'sender@example.com'
    msg['To'] = 'rcpt@example.com'
    msg['Subject'] = 'harness %d' % n
    msg['Message-ID'] = '<harness-%d@example.com>' % n
    msg.set_content('hello %d' % n)
    return msg


def test_redis_aof_survives_kill(tmp_path):
    with RedisServer(appendonly=True, appendfsync='always', tmpdir=tmp_path) as server:
        port = server.port
        server.client().set('k', 'v')
        server.kill()
        server.restart()
        assert server.port == port
        assert server.client().get('k') == b'v'


def test_redis_url_fixture_is_private_and_clean(redis_url, redis_client):
    assert not redis_url.endswith(':6379/0')
    assert redis_client.dbsize() == 0
    redis_client.set('x', 1)


def test_plain_smtp(smtp_server):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.send_message(make_message())
    [msg] = smtp_server.wait_for(1)
    assert msg.mail_from == 'sender@example.com'
    assert msg.rcpt_tos == ['rcpt@example.com']
    assert msg.message_id == '<harness-1@example.com>'
    assert b'hello 1' in msg.data
    assert smtp_server.connections == 1 and smtp_server.transactions == 1


def test_starttls_with_auth(smtp_factory):
    server = smtp_factory(security='starttls', require_starttls=True,
                          auth=('user', 'secret'))
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPException):
            client.login('user', 'secret')   # no AUTH before STARTTLS
        client.starttls(context=server.client_ssl_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login('user', 'wrong')
        client.login('user', 'secret')
        client.send_message(make_message())
    assert server.wait_for(1)[0].message_id == '<harness-1@example.com>'
    assert server.connections == 1


@pytest.mark.parametrize('mechanism', ['PLAIN', 'LOGIN'])
def test_implicit_tls_with_auth(smtp_factory, mechanism):
    server = smtp_factory(security='tls', auth=('user', 'secret'))
    ctx = server.client_ssl_context()   # verifies the cert against ca_file
    with smtplib.SMTP_SSL(server.host, server.port, context=ctx, timeout=5) as client:
        client.ehlo()
        client.user, client.password = 'user', 'secret'
        client.auth(mechanism, getattr(client, 'auth_' + mechanism.lower()))
        client.send_message(make_message())
    server.wait_for(1)


def test_auth_required(smtp_factory):
    server = smtp_factory(security='tls', auth=('user', 'secret'))
    with smtplib.SMTP_SSL(server.host, server.port, timeout=5,
                          context=server.client_ssl_context()) as client:
        with pytest.raises(smtplib.SMTPException):
            client.send_message(make_message())
    assert server.messages == []


def test_untrusted_certificate_is_rejected(smtp_factory):
    server = smtp_factory(security='tls')
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(server.host, server.port, timeout=5,
                         context=ssl.create_default_context())


def test_fail_rcpt(smtp_server):
    smtp_server.fail_rcpt('bad@example.com', 550, 'No such user')
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        refused = client.sendmail('a@example.com', ['bad@example.com', 'ok@example.com'],
                                  make_message().as_bytes())
        assert refused == {'bad@example.com': (550, b'No such user')}
        smtp_server.fail_rcpt(None, 451, 'Try later')
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail('a@example.com', ['ok@example.com'], b'x')
    assert smtp_server.wait_for(1)[0].rcpt_tos == ['ok@example.com']


def test_fail_data_then_recover(smtp_server):
    smtp_server.fail_data(451, 'Try again later', times=2)
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError) as exc:
                client.send_message(make_message())
            assert exc.value.smtp_code == 451
        client.send_message(make_message())
    assert len(smtp_server.wait_for(1)) == 1
    assert smtp_server.transactions == 3


def test_drop_in_data(smtp_server):
    smtp_server.drop_in_data()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
            client.send_message(make_message())
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.send_message(make_message(2))
    assert [m.message_id for m in smtp_server.wait_for(1)] == ['<harness-2@example.com>']
    assert smtp_server.connections == 2


def test_delay_data_times_out_client_but_not_others(smtp_server):
    smtp_server.delay_data(1.5)
    slow = smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=0.5)
    with pytest.raises((socket.timeout, smtplib.SMTPServerDisconnected)):
        slow.send_message(make_message())
    slow.close()
    # Delay is per connection (asyncio.sleep): a second client is served meanwhile.
    start = time.monotonic()
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        assert client.noop()[0] == 250
        assert time.monotonic() - start < 1
        smtp_server.delay_data(0)
        client.send_message(make_message(2))
    assert smtp_server.wait_for(1)


def test_wait_for_timeout_message(smtp_server):
    with pytest.raises(AssertionError, match='got 0 message'):
        smtp_server.wait_for(1, timeout=0.2)


def test_mailq_ini(mailq_ini, redis_url, smtp_server):
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(mailq_ini)
    assert cp['redis']['url'] == redis_url
    assert cp.getint('smtp', 'port') == smtp_server.port
    assert cp['worker']['queues'] == 'mailers, default'
    assert cp['templates']['path'].endswith('templates/mail')


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as s:
        s.bind(('127.0.0.1', port))
