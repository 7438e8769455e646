"""aiosmtpd's SMTP with mailq's replies where aiosmtpd has its own: the size limit
answers 552 5.3.4 (RFC 3463) whether it is announced in MAIL FROM SIZE= or found
while reading DATA. A plain `<local@domain>` path is read by a regex: aiosmtpd's
parser (the email package's header parser) cost about 200 us an address. DATA is
read in chunks up to each `.CRLF` rather than a line at a time (a fifth of the
listener's time went to aiosmtpd's loop over the lines)."""
import asyncio
import logging
import re

import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP

from .replies import TOO_BIG

# A dot-atom local part and a plain domain in angle brackets, then the parameters.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"\s*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)>"
                         r"(?:[ \t]+(.*))?\Z", re.S)
END = b'\r\n.\r\n'        # the end of DATA, its first CRLF maybe that of the DATA line
LINE_TOO_LONG = '500 Line too long (see RFC5321 4.5.3.1.6)'
log = logging.getLogger('mail.log')
_SIZE_REPLIES = ('552 Error: Too much mail data',
                 '552 Error: message size exceeds fixed maximum message size')


def _sanitized_log(func, msg, *args, **kwargs):
    """aiosmtpd's sanitized_log, only when its logger would log: aiosmtpd sanitizes each
    command line for an INFO and a DEBUG call before the logger looks at its level
    (3.5 us a command), and mailq keeps mail.log at WARNING (listener.py)."""
    if func.__self__.isEnabledFor(logging.getLevelName(func.__name__.upper())):
        _aiosmtpd_sanitized_log(func, msg, *args, **kwargs)


_aiosmtpd_sanitized_log = aiosmtpd.smtp.sanitized_log
aiosmtpd.smtp.sanitized_log = _sanitized_log


class SubmissionSMTP(SMTP):
    def __init__(self, handler, counters=None, **kwargs):
        self.counters = counters
        super().__init__(handler, **kwargs)

    async def push(self, status):
        if status in _SIZE_REPLIES:
            status = TOO_BIG.format(limit=self.data_size_limit)
            if self.counters:
                self.counters.count(status)
        return await super().push(status)

    def _getaddr(self, arg):
        plain = _PLAIN_PATH.match(arg) if arg else None
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain.group(1), plain.group(2) or ''
        if self.local_part_limit and len(address.rpartition('@')[0]) > self.local_part_limit:
            return None, None
        return address, rest

    async def smtp_DATA(self, arg):
        """aiosmtpd's DATA, with the message read by read_data."""
        if await self.check_helo_needed() or await self.check_auth_needed('DATA'):
            return
        if not self.envelope.rcpt_tos:
            return await self.push('503 Error: need RCPT command')
        if arg:
            return await self.push('501 Syntax: DATA')
        await self.push('354 End data with <CR><LF>.<CR><LF>')
        try:
            content, refusal = await read_data(self._reader, self.data_size_limit,
                                               self.line_length_limit)
        except asyncio.CancelledError:
            log.info('Connection lost during DATA')
            self._writer.close()
            raise
        if refusal:
            self._set_post_data_state()
            return await self.push(refusal)
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook('DATA')
        self._set_post_data_state()
        await self.push(status)


async def read_data(reader, size_limit, line_limit):
    """(message, None) or (None, refusal) of the DATA that follows a 354: up to the
    first CRLF.CRLF, dot-unstuffed (RFC 5321 4.5.2). Only CRLF ends a line, as in
    aiosmtpd, so a bare LF before a dot does not end the data (the message keeps it,
    and compose_raw refuses it). Over `size_limit` the rest is read and dropped."""
    data = bytearray(b'\r\n')       # the DATA line's CRLF, so END is found at the start
    size, too_much = 0, False
    while not data.endswith(END):
        try:
            chunk = await reader.readuntil(b'.\r\n')
        except asyncio.LimitOverrunError as exc:
            chunk = await reader.read(exc.consumed)
        size += len(chunk)
        if size_limit and size - 3 > size_limit:
            too_much = True
            del data[:-4]             # keep what END may still begin with
        data += chunk
    if too_much:
        return None, '552 Error: Too much mail data'
    message = bytes(data[:-3]).replace(b'\r\n.', b'\r\n')[2:]
    if any(len(line) > line_limit - 2 for line in message.split(b'\r\n')):
        return None, LINE_TOO_LONG
    return message, None
