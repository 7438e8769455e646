"""The listener's DATA reader (protocol.read_data) on the byte streams a client can
send: where the data ends, dot-unstuffing, the size and line limits, and chunks the
stream reader's 1001-byte limit cuts."""
import asyncio
import logging

import aiosmtpd.smtp
import pytest

from mailq.compose_raw import has_bare_newline
from mailq.submission.protocol import LINE_TOO_LONG, read_data


def read(stream, size_limit=0, line_limit=1001, feed_in=None):
    """read_data over a StreamReader with aiosmtpd's limit, fed `stream` in pieces of
    `feed_in` bytes; returns (result, the bytes left unread)."""
    async def run():
        reader = asyncio.StreamReader(limit=line_limit)
        step = feed_in or len(stream)
        for start in range(0, len(stream), step):
            reader.feed_data(stream[start:start + step])
        reader.feed_eof()
        result = await read_data(reader, size_limit, line_limit)
        return result, await reader.read()
    return asyncio.run(run())


def test_empty_message():
    assert read(b'.\r\nQUIT\r\n') == ((b'', None), b'QUIT\r\n')


def test_a_line_ending_in_a_dot_does_not_end_the_data():
    stream = b'Subject: x\r\n\r\nHi Ann.\r\nBye.\r\n.\r\nQUIT\r\n'
    assert read(stream) == ((b'Subject: x\r\n\r\nHi Ann.\r\nBye.\r\n', None), b'QUIT\r\n')


def test_dot_unstuffing():
    stream = b'..first\r\nmid\r\n...\r\n..\r\n.\r\n'
    assert read(stream)[0] == (b'.first\r\nmid\r\n..\r\n.\r\n', None)


@pytest.mark.parametrize('smuggled', [b'a\n.\r\nMAIL FROM:<x@y>\r\n', b'a\r\n.\nRSET\r\n',
                                      b'a\r.\r\nRSET\r\n'])
def test_a_bare_cr_or_lf_around_the_dot_does_not_end_the_data(smuggled):
    (message, refusal), rest = read(smuggled + b'.\r\nQUIT\r\n')
    assert refusal is None and rest == b'QUIT\r\n'
    assert message.replace(b'\r\n\n', b'\r\n.\n') == smuggled    # a dot-led line unstuffed
    assert has_bare_newline(message)


@pytest.mark.parametrize('feed_in', [None, 1, 7, 1000])
def test_long_messages_past_the_reader_limit(feed_in):
    body = b''.join(b'line %05d %s\r\n' % (i, b'x' * (i % 90)) for i in range(400))
    stream = b'Subject: big\r\n\r\n' + body + b'.\r\nQUIT\r\n'
    assert read(stream, feed_in=feed_in) == ((b'Subject: big\r\n\r\n' + body, None),
                                             b'QUIT\r\n')


def test_over_the_size_limit_is_read_to_the_end_and_refused():
    stream = b'x' * 80 + b'\r\n'
    assert read(stream * 100 + b'.\r\nQUIT\r\n', size_limit=4096) == \
        ((None, '552 Error: Too much mail data'), b'QUIT\r\n')
    exact = stream * 2
    assert read(exact + b'.\r\n', size_limit=len(exact))[0] == (exact, None)
    assert read(exact + b'.\r\n', size_limit=len(exact) - 1)[0][1].startswith('552')


def test_a_line_over_1000_bytes_is_refused():
    assert read(b'a' * 999 + b'\r\n.\r\n')[0] == (b'a' * 999 + b'\r\n', None)
    assert read(b'a' * 1000 + b'\r\n.\r\n')[0] == (None, LINE_TOO_LONG)


@pytest.mark.parametrize('raw, bare', [(b'a\r\nb\r\n', False), (b'', False), (b'a\nb', True),
                                       (b'a\rb', True), (b'a\r\r\n', True),
                                       (b'a\r\n\n', True), (b'\n\r', True)])
def test_has_bare_newline(raw, bare):
    assert has_bare_newline(raw) is bare


@pytest.mark.parametrize('level, sanitized, logged', [
    (logging.WARNING, 0, []), (logging.INFO, 1, ["'peer' >> b'AUTH PLAIN ********'"])])
def test_aiosmtpd_command_log_is_skipped_below_its_level_and_still_sanitized(
        level, sanitized, logged, caplog, monkeypatch):
    """protocol.py spares aiosmtpd's per-command log calls their sanitizing when mail.log
    would drop them; when it would not, AUTH's credentials are still masked."""
    calls = []
    sanitize = aiosmtpd.smtp.sanitize
    monkeypatch.setattr(aiosmtpd.smtp, 'sanitize', lambda text: calls.append(text) or
                        sanitize(text))
    logger = logging.getLogger('mail.log')
    with caplog.at_level(level, logger='mail.log'):
        aiosmtpd.smtp.sanitized_log(logger.info, '%r >> %r', 'peer', b'AUTH PLAIN c2VjcmV0')
    assert len(calls) == sanitized
    assert [r.getMessage() for r in caplog.records if r.name == 'mail.log'] == logged
