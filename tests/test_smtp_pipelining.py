"""The SMTP transport's PIPELINING path (RFC 2920), against a real aiosmtpd server
that advertises it: MAIL, RCPTs and DATA go in one write, the replies are read in
order, and refusals and failures come out as they do without pipelining."""

import pytest
from aiosmtpd.controller import Controller

from mailq.config import SMTPConfig
from mailq.transport import SMTPTransport
from support.procs import free_port

RAW = (b'From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n'
       b'line one\r\n.starts with a dot\r\n..two dots\r\nlast\r\n')


class PipeliningHandler:
    def __init__(self):
        self.received, self.refuse, self.data_reply = [], {}, None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ['250-PIPELINING', responses[-1]]

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return '250 OK queued as X'


@pytest.fixture
def server():
    handler = PipeliningHandler()
    controller = Controller(handler, hostname='127.0.0.1', port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def transport(port):
    return SMTPTransport(SMTPConfig(transport='smtp', host='127.0.0.1', port=port, timeout=5))


def test_pipelined_delivery_keeps_the_bytes_and_dot_stuffing(server):
    handler, port = server
    t = transport(port)
    first = t.send('a@example.com', ['b@example.com', 'c@example.com'], RAW)
    second = t.send('a@example.com', ['b@example.com'], RAW)     # same session, reused
    assert t._local.conn.has_extn('pipelining')
    assert first.ok and second.ok and first.code == 250 and first.refused == {}
    assert [r[:2] for r in handler.received] == [
        ('a@example.com', ['b@example.com', 'c@example.com']), ('a@example.com', ['b@example.com'])]
    assert handler.received[0][2].replace(b'\r\n', b'\n') == RAW.replace(b'\r\n', b'\n')
    t.close(polite=True)


def test_pipelined_partial_refusal_is_sent_and_recorded(server):
    handler, port = server
    handler.refuse['gone@example.com'] = '550 5.1.1 No such user'
    t = transport(port)
    result = t.send('a@example.com', ['b@example.com', 'gone@example.com'], RAW)
    assert result.ok and result.refused == {'gone@example.com': [550, '5.1.1 No such user']}
    assert handler.received[0][1] == ['b@example.com']


def test_pipelined_all_refused_is_permanent_and_the_session_recovers(server):
    handler, port = server
    handler.refuse['gone@example.com'] = '550 5.1.1 No such user'
    t = transport(port)
    result = t.send('a@example.com', ['gone@example.com'], RAW)
    assert not result.ok and not result.transient and result.code == 550
    assert handler.received == []
    assert t.send('a@example.com', ['b@example.com'], RAW).ok


def test_pipelined_temporary_data_failure_is_transient(server):
    handler, port = server
    handler.data_reply = '451 4.3.0 Try again later'
    result = transport(port).send('a@example.com', ['b@example.com'], RAW)
    assert not result.ok and result.transient and result.code == 451
