"""aiosmtpd's SMTP with mailq's replies where aiosmtpd has its own: the size limit
answers 552 5.3.4 (RFC 3463) whether it is announced in MAIL FROM SIZE= or found
while reading DATA."""
from aiosmtpd.smtp import SMTP

from .replies import TOO_BIG

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
