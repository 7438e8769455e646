"""Errors that cross module lines: each carries what the caller must show.

`http_status` is the one mapping from an error to an HTTP status: the JSON API
and the dashboard's pages read it from the error (a subclass inherits its
parent's), instead of each keeping a table of classes. The CLI and sendmail
turn errors into exit codes with `except` clauses, which cover subclasses too.
"""


class MailqError(Exception):
    """Base class, so callers can catch everything of ours at once."""

    http_status = 500

    def details(self):
        """Machine-readable context for the JSON error body."""
        return {}


class ConfigError(MailqError):
    """A bad config value. The message names file, section and key."""

    http_status = 500       # the server's fault, never the caller's

    def __init__(self, message, source=None, section=None, key=None):
        where = ':'.join(p for p in (source, f'[{section}]' if section else None, key) if p)
        super().__init__(f'{where}: {message}' if where else message)
        self.source, self.section, self.key = source, section, key


class ValidationError(MailqError):
    """Bad mail input. `field` names the offending field (dotted path)."""

    http_status = 422

    def __init__(self, field, message):
        super().__init__(f'{field}: {message}')
        self.field, self.message = field, message

    def details(self):
        return {'field': self.field, 'reason': self.message}


class NotFound(MailqError):
    """No mail (or other object) with that id."""

    http_status = 404


class Conflict(MailqError):
    """The object is in a state that forbids the action (e.g. cancel a sent mail)."""

    http_status = 409


class Unavailable(MailqError):
    """Redis cannot be reached."""

    http_status = 503

    def details(self):
        return {'redis': 'unreachable'}
