"""Logging set-up: text or JSON lines, and secrets redacted from every record."""
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
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, '***')
            record.msg, record.args = message, None
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record):
        entry = {'time': time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created)),
                 'level': record.levelname.lower(), 'logger': record.name,
                 'message': record.getMessage()}
        if record.exc_info:
            entry['exception'] = self.formatException(record.exc_info)
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
