"""`mailq sendmail` / `mailq-sendmail`: a drop-in for /usr/sbin/sendmail, so PHP's mail(),
cron's MAILTO, `git send-email` and shell scripts enqueue into mailq with no SMTP hop.

It takes the flags programs pass to sendmail, reads the message on stdin (LF line ends,
as sendmail does) and hands it to service.send_message, the accept path of the API
and the SMTP listener. Exit codes are sendmail's sysexits(3), which callers test:
64 bad flags, 65 a bad message, 75 Redis unavailable (try later), 78 a config error.
"""
import email.utils
import sys

from . import config as config_module
from .compose_raw import _fields, _split, _value
from .errors import ConfigError, Conflict, MailqError, Unavailable, ValidationError

EX_OK, EX_USAGE, EX_DATAERR, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 0, 64, 65, 70, 75, 78
# Flags that take a value and that mailq accepts but has no use for (queue and
# delivery modes, DSN, body type, envelope id).
IGNORED_WITH_VALUE = {'-B', '-N', '-R', '-V', '-L', '-h', '-O'}
IGNORED = {'-v', '-m', '-U', '-bm', '-Am', '-Ac', '-n'}
VALUE_FLAGS = {'-f': 'sender', '-r': 'sender', '-F': 'full_name', '-C': 'config'}
# What each refusal of the accept path exits with, and how it is told (first match wins).
EXITS = ((ValidationError, EX_DATAERR, 'bad message: {}'), (Conflict, EX_DATAERR, '{}'),
         (Unavailable, EX_TEMPFAIL, '{}; try again later'), (MailqError, EX_SOFTWARE, '{}'))


class UsageError(Exception):
    pass


class Options:
    def __init__(self):
        self.sender = None           # -f / -r
        self.full_name = None        # -F
        self.from_headers = False    # -t
        self.dots = True             # a line "." ends the message unless -i / -oi
        self.config = None           # -C PATH: the mailq config
        self.recipients = []


def parse_args(argv):
    """Options of sendmail(1)'s flags, in its forms: `-f addr` and `-faddr`, `-oi`."""
    opts, args = Options(), list(argv)
    while args:
        arg = args.pop(0)
        if arg == '--':
            opts.recipients += args
            break
        if not arg.startswith('-') or arg == '-':
            opts.recipients.append(arg)
            continue
        flag, attached = arg[:2], arg[2:]
        if arg in ('-t',):
            opts.from_headers = True
        elif arg in ('-i', '-oi'):
            opts.dots = False
        elif flag in VALUE_FLAGS or flag in IGNORED_WITH_VALUE:
            value = attached or (args.pop(0) if args else None)
            if value is None:
                raise UsageError(f'{flag} needs a value')
            if flag in ('-f', '-r'):
                value = value.strip().strip('<>')
            if flag in VALUE_FLAGS:
                setattr(opts, VALUE_FLAGS[flag], value)
        elif flag == '-o' or arg in IGNORED:
            continue                 # -oem, -odi, -oQ...: sendmail options of no use here
        elif flag == '-b':
            raise UsageError(f'{arg}: only -bm (deliver a message) is supported')
        else:
            raise UsageError(f'unknown flag {arg}')
    return opts


def read_message(stream, dots):
    """The message with CRLF line ends (sendmail's input has LF); without -i a line
    of a single dot ends it."""
    lines = []
    for line in stream:
        if dots and line.rstrip(b'\r\n') == b'.':
            break
        lines.append(line[:-2] if line.endswith(b'\r\n') else
                     line[:-1] if line.endswith(b'\n') else line)
    return b''.join(line + b'\r\n' for line in lines)


def header_recipients(raw):
    """-t: the addresses of To, Cc and Bcc (the listener's rules then drop Bcc)."""
    head, _ = _split(raw)
    values = [_value(name, line) for name, line in _fields(head)
              if name.lower() in ('to', 'cc', 'bcc')]
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


def with_from(raw, sender, full_name):
    """-F: the From a message without one gets names the sender with this full name."""
    head, _ = _split(raw)
    if not full_name or any(name.lower() == 'from' for name, _ in _fields(head)):
        return raw
    return ('From: ' + email.utils.formataddr((full_name, sender))).encode() + b'\r\n' + raw


def main(argv=None, stdin=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        print(f'mailq-sendmail: {exc}', file=sys.stderr)
        return EX_USAGE
    try:
        config = config_module.load(opts.config)
    except ConfigError as exc:
        print(f'mailq-sendmail: config error: {exc}', file=sys.stderr)
        return EX_CONFIG
    if config.no_file_warning():        # no -C, no $MAILQ_CONFIG, no ./mailq.ini
        print(config.no_file_warning(), file=sys.stderr)
    raw = read_message(stdin or sys.stdin.buffer, opts.dots)
    try:
        return _enqueue(config, opts, raw)
    except MailqError as exc:
        code, text = next((code, text) for cls, code, text in EXITS if isinstance(exc, cls))
        print('mailq-sendmail: ' + text.format(exc), file=sys.stderr)
        return code

def _enqueue(config, opts, raw):
    from . import service
    from .compose import parse_sender
    from .runtime import Runtime
    sender = opts.sender if opts.sender is not None else parse_sender(config.smtp.sender)[1]
    recipients = [a.strip() for r in opts.recipients for a in r.split(',') if a.strip()]
    if opts.from_headers:
        recipients += header_recipients(raw)
    if not recipients:
        print('mailq-sendmail: no recipients (give them as arguments, or -t)',
              file=sys.stderr)
        return EX_USAGE
    raw = with_from(raw, sender, opts.full_name)
    service.send_message(Runtime(config), raw, sender, list(dict.fromkeys(recipients)),
                         source='sendmail')
    return EX_OK
