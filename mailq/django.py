"""A Django email backend: `EMAIL_BACKEND = "mailq.django.EmailBackend"`.

Django renders the message (attachments, alternatives, headers) as it would for SMTP;
the bytes go to mailq through the Python API (service.send_message), with no SMTP hop,
so `send_mail()` returns in a millisecond and the mail is retried by mailq's workers.
`MAILQ_CONFIG` in settings (or $MAILQ_CONFIG, or ./mailq.ini) names the config file.
X-Mailq-* headers (headers={...}) choose queue, send time and idempotency key.
"""
import email.utils

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address

from . import service
from .errors import MailqError
from .runtime import default_runtime


class EmailBackend(BaseEmailBackend):
    def __init__(self, fail_silently=False, config=None, **kwargs):
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.config_path = config or getattr(settings, 'MAILQ_CONFIG', None)

    def send_messages(self, email_messages):
        """The number of messages mailq accepted; with fail_silently, a mail mailq refuses
        (invalid, Redis down) is skipped instead of raising."""
        if not email_messages:
            return 0
        try:
            rt = default_runtime(str(self.config_path) if self.config_path else None)
        except MailqError:
            if not self.fail_silently:
                raise
            return 0
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            try:
                self._send(rt, message)
            except MailqError:
                if not self.fail_silently:
                    raise
                continue
            sent += 1
        return sent

    @staticmethod
    def _send(rt, message):
        encoding = message.encoding or settings.DEFAULT_CHARSET
        sender = _bare(sanitize_address(message.from_email, encoding))
        recipients = [_bare(sanitize_address(a, encoding)) for a in message.recipients()]
        raw = message.message().as_bytes(linesep='\r\n')
        service.send_message(rt, raw, sender, recipients, source='django')


def _bare(address):
    """a@b of 'Name <a@b>' (what SMTP's envelope carries)."""
    return email.utils.parseaddr(address)[1]
