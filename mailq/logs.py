"""Logging set-up: text or JSON lines, and secrets redacted from every record.

A record may carry `extra={'fields': {...}}`: JSON lines show them as keys of their
own (the delivery line's mail, queue, outcome, code...), so a log shipper need not
parse the message; text lines have them in the message already."""
import json
import logging
import sys
import time


class RedactingFilter(logging.Filter):
    """Replaces every configured secret (SMTP, web and Redis passwords) with ***."""

    def __init__(self, secrets):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record):
        if self.secrets:
            record.msg, record.args = redact(record.getMessage(), self.secrets), None
            fields = getattr(record, 'fields', None)
            if fields:
                record.fields = {k: redact(v, self.secrets) if isinstance(v, str) else v
                                 for k, v in fields.items()}
            if record.exc_info:   # exception texts can carry secrets too (URLs, replies)
                record.exc_text = redact(_PLAIN.formatException(record.exc_info), self.secrets)
                record.exc_info = None
        return True


def redact(text, secrets):
    """`text` with every secret replaced by ***; also for /healthz and `mailq check`."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, '***')
    return text


_PLAIN = logging.Formatter()


class JSONFormatter(logging.Formatter):
    def format(self, record):
        entry = {'time': time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created)),
                 'level': record.levelname.lower(), 'logger': record.name,
                 'message': record.getMessage()}
        for key, value in getattr(record, 'fields', {}).items():
            entry.setdefault(key, value)
        if record.exc_info or record.exc_text:
            entry['exception'] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config, stream=None):
    handler = logging.StreamHandler(stream or sys.stderr)
    if config.log.format == 'json':
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    handler.addFilter(RedactingFilter(config.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level.upper())
    logging.getLogger('huey').setLevel(max(logging.WARNING, root.level))
    return handler
