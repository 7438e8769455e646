"""aiosmtpd's SMTP with mailq's replies where aiosmtpd has its own: the size limit
answers 552 5.3.4 (RFC 3463) whether it is announced in MAIL FROM SIZE= or found
while reading DATA. A plain `<local@domain>` path is read by a regex: aiosmtpd's
parser (the email package's header parser) cost about 200 us an address."""
import re

from aiosmtpd.smtp import SMTP

from .replies import TOO_BIG

# A dot-atom local part and a plain domain in angle brackets, then the parameters.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(rf"\s*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)>"
                         r"(?:[ \t]+(.*))?\Z", re.S)
_SIZE_REPLIES = ('552 Error: Too much mail data',
                 '552 Error: message size exceeds fixed maximum message size')


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
