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
        self.secrets = sorted(filter(None, secrets), key=len, reverse=True)

    def filter(self, record):
        if self.secrets:
            secrets = self.secrets
            message = record.getMessage()
            if any(s in message for s in secrets):
                message = redact(message, secrets)
            record.msg, record.args = message, None
            fields = getattr(record, 'fields', None)
            # One search over the values joined: a secret found across two only costs
            # a rewrite that finds nothing.
            joined = fields and '\0'.join(v for v in fields.values() if isinstance(v, str))
            if joined and any(s in joined for s in secrets):
                record.fields = {k: redact(v, secrets) if isinstance(v, str) else v
                                 for k, v in fields.items()}
            if record.exc_info:   # exception texts can carry secrets too (URLs, replies)
                record.exc_text = redact(_PLAIN.formatException(record.exc_info), secrets)
                record.exc_info = None
        return True


def redact(text, secrets):
    """`text` with every secret replaced by ***; also for /healthz and `mailq check`."""
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, '***')
    return text


_PLAIN = logging.Formatter()


class TextFormatter(logging.Formatter):
    """The stdlib's text lines; the time of day formatted once a second, not once a line."""
    _cached = (None, '')        # (second, its text): one tuple, so threads read a pair

    def formatTime(self, record, datefmt=None):
        if datefmt:
            return super().formatTime(record, datefmt)
        second, text = self._cached
        if second != int(record.created):
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._cached = (int(record.created), text)
        return self.default_msec_format % (text, record.msecs)


class JSONFormatter(logging.Formatter):
    _cached = (None, '')

    def format(self, record):
        second, text = self._cached
        if second != int(record.created):
            text = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))
            self._cached = (int(record.created), text)
        entry = {'time': text,
                 'level': record.levelname.lower(), 'logger': record.name,
                 'message': record.getMessage()}
        for key, value in getattr(record, 'fields', {}).items():
            entry.setdefault(key, value)
        if record.exc_info or record.exc_text:
            entry['exception'] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(config, stream=None):
    # No format here shows the caller, thread or process: the logging HOWTO's
    # "Optimization" switches spare every record their lookups (the worker logs each mail).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    if config.log.format == 'json':
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    handler.addFilter(RedactingFilter(config.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level.upper())
    logging.getLogger('huey').setLevel(max(logging.WARNING, root.level))
    return handler
