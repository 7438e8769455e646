"""A mail that needs SMTPUTF8 (a UTF-8 address or header, as SMTP submission accepts)
is sent with it when the relay offers it, and is refused for good when it does not:
RFC 6531 has no downgrade."""
from mailq.config import SMTPConfig
from mailq.transport import SMTPTransport
from support.raw_smtp import DEFAULT_EXTENSIONS, RawSMTPServer

MESSAGE = 'From: jörg@example.com\r\nTo: ann@example.com\r\nSubject: grüße\r\n\r\nhi\r\n'


def transport(server):
    return SMTPTransport(SMTPConfig(transport='smtp', host='127.0.0.1', port=server.port,
                                    timeout=5))


def test_relay_without_smtputf8_makes_the_mail_fail_for_good():
    server = RawSMTPServer(extensions=DEFAULT_EXTENSIONS)
    try:
        delivery = transport(server).send('jörg@example.com', ['ann@example.com'],
                                          MESSAGE.encode())
        assert not delivery.ok and not delivery.transient
        assert 'does not offer SMTPUTF8' in delivery.reply
        assert server.messages == []
    finally:
        server.stop()


def test_relay_with_smtputf8_gets_it_in_mail_from():
    server = RawSMTPServer(extensions=DEFAULT_EXTENSIONS + ('SMTPUTF8',))
    try:
        t = transport(server)
        delivery = t.send('app@example.com', ['ann@example.com'], MESSAGE.encode())
        assert delivery.ok, delivery
        [(mail_from, data)] = server.wait_messages(1)
        assert b'SMTPUTF8' in mail_from and 'grüße'.encode() in data
        t.close()
    finally:
        server.stop()
