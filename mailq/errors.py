"""Errors that cross module lines: each carries what the caller must show."""


class MailqError(Exception):
    """Base class, so callers can catch everything of ours at once."""


class ConfigError(MailqError):
    """A bad config value. The message names file, section and key."""

    def __init__(self, message, source=None, section=None, key=None):
        where = ':'.join(p for p in (source, f'[{section}]' if section else None, key) if p)
        super().__init__(f'{where}: {message}' if where else message)
        self.source, self.section, self.key = source, section, key


class ValidationError(MailqError):
    """Bad mail input. `field` names the offending field (dotted path)."""

    def __init__(self, field, message):
        super().__init__(f'{field}: {message}')
        self.field, self.message = field, message

    def details(self):
        return {'field': self.field, 'reason': self.message}


class NotFound(MailqError):
    """No mail (or other object) with that id."""


class Conflict(MailqError):
    """The object is in a state that forbids the action (e.g. cancel a sent mail)."""


class Unavailable(MailqError):
    """Redis cannot be reached."""
