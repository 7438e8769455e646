"""Start-up validation that needs more than the config itself.

`config.load()` parses and checks every value on its own (types, ranges,
cross-field rules) and imports nothing above it. The checks here need the
mail composer and the cron schedule parser, so they live one layer up, and
every role calls `validate_startup(config)` right after loading: a bad
`[smtp] from` or `[cron:NAME]` section stops start-up (exit 2), naming the
file, section and key, instead of failing every mail or the 08:00 run.
"""
from .compose import parse_sender
from .cron.validate import check_static as check_cron_jobs
from .errors import ValidationError


def validate_startup(config):
    """Raise ConfigError (file, section, key) for a config no role can run with."""
    check_sender(config)
    check_cron_jobs(config)
    return config


def check_sender(config):
    """Every mail without a "from" uses [smtp] from: a bad one would 422 each of them,
    blaming the client, so it stops start-up instead (with compose's own check)."""
    try:
        parse_sender(config.smtp.sender)
    except ValidationError as exc:
        raise config.error(f'{exc.message} (the sender of mails that name none)',
                           'smtp', 'from') from None
