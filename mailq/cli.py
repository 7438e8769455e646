"""Command line: parse flags, load the config once, hand off to the package.

    mailq web [--host H] [--port P]
    mailq worker [-w N] [-q QUEUE[,WEIGHT]]... [-k thread|process]
    mailq run
    mailq send --to ADDR [--cc ADDR] [--bcc ADDR] [--template NAME --context JSON |
               --subject S --text T] [--at ISO | --delay SECONDS] [--queue Q]
               [--idempotency-key KEY]
    mailq send --csv FILE --template NAME [--key-column COLUMN] [--context JSON] [--at ISO]
               [--queue Q]
    mailq stats
    mailq check [--defaults]
    mailq cron [run|pause|resume NAME] [--json]
    mailq suppress list|add|remove [ADDRESS] [--reason R] [--json]
    mailq submission
    mailq sendmail [-t] [-i] [-f SENDER] [-F NAME] [RECIPIENT...] < message
"""
import argparse
import json
import logging
import signal
import sys

from . import config as config_module
from .errors import ConfigError, MailqError, Unavailable, ValidationError
from .logs import setup_logging
from .startup import validate_startup


def build_parser():
    parser = argparse.ArgumentParser(
        prog='mailq', description='A durable mail queue: HTTP API, SMTP workers, Redis.')
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('-c', '--config', metavar='PATH',
                        help='config file (default: $MAILQ_CONFIG, then ./mailq.ini)')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    web = sub.add_parser('web', parents=[common], help='serve the HTTP API and dashboard')
    _listen_flags(web)

    worker = sub.add_parser('worker', parents=[common], help='deliver queued mail')
    _worker_flags(worker)

    run = sub.add_parser('run', parents=[common],
                         help='web and worker in one process (one small box, development)')
    _listen_flags(run)
    _worker_flags(run)
    run.add_argument('--ensure-redis', action='store_true',
                     help='if no Redis answers at [redis] url (on localhost), start a private '
                     'redis-server under ./var for as long as this process runs')

    send = sub.add_parser('send', parents=[common],
                          help='enqueue one mail (prints its id), or one per CSV row')
    send.add_argument('--to', action='append', help='recipient (repeatable; not with --csv)')
    send.add_argument('--cc', action='append', help='copy recipient (repeatable)')
    send.add_argument('--bcc', action='append', help='blind copy recipient (repeatable)')
    send.add_argument('--csv', metavar='FILE', help='one mail per row, with --template: columns '
                      'are the context, a "to" or "email" column the recipient')
    send.add_argument('--key-column', metavar='COLUMN', help='with --csv: the column that '
                      'identifies a row for idempotent re-runs (default: the whole row)')
    send.add_argument('--template', help='mail template name')
    send.add_argument('--context', default=None, help='template context as a JSON object')
    send.add_argument('--subject')
    send.add_argument('--text')
    send.add_argument('--html')
    send.add_argument('--from', dest='sender')
    send.add_argument('--at', help='send at this ISO 8601 time (with offset)')
    send.add_argument('--delay', type=seconds, metavar='SECONDS',
                      help='send this many seconds from now (not with --at)')
    send.add_argument('--queue')
    send.add_argument('--idempotency-key', metavar='KEY', help='the same key again prints '
                      'the first mail\'s id and enqueues nothing new (not with --csv)')

    sub.add_parser('stats', parents=[common], help='counts per state and per queue (JSON)')
    check = sub.add_parser('check', parents=[common],
                           help='validate config, reach Redis and SMTP, render every template')
    check.add_argument('--defaults', action='store_true',
                       help='accept running without a config file (built-in defaults and '
                       'MAILQ_* variables); without it, no config file found fails the check')
    cron = sub.add_parser('cron', parents=[common],
                          help='list cron jobs; or run, pause or resume one by NAME')
    cron.add_argument('action', nargs='?', choices=('list', 'run', 'pause', 'resume'),
                      default='list')
    cron.add_argument('name', nargs='?', help='job name (the NAME of [cron:NAME])')
    cron.add_argument('--json', action='store_true', help='print JSON instead of a table')
    suppress = sub.add_parser('suppress', parents=[common],
                              help='list the suppression list; add or remove an ADDRESS')
    suppress.add_argument('action', choices=('list', 'add', 'remove'))
    suppress.add_argument('address', nargs='?', help='the address (add, remove); a filter (list)')
    suppress.add_argument('--reason', help='with add: why (default: manual)')
    suppress.add_argument('--page', type=int, default=1, help='with list: the page (25 a page)')
    suppress.add_argument('--json', action='store_true', help='print JSON instead of lines')
    sub.add_parser('submission', parents=[common],
                   help='accept mail over SMTP ([submission] host and port)')
    sub.add_parser('sendmail', add_help=False,
                   help='a sendmail drop-in: read a message on stdin and enqueue it '
                   '(-t -i -f -F; exit codes are sysexits)')
    return parser


def _listen_flags(parser):
    parser.add_argument('--host', help='address to bind (default: [web] host)')
    parser.add_argument('--port', type=port_number, help='port (default: [web] port)')


def port_number(text):
    """--port: 1..65535 like [web] port, so a bad one is a usage error, not a traceback."""
    try:
        port = int(text)
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f'{text!r} is not a port (1 to 65535)')
    return port


def seconds(text):
    """--delay: a number (its range is checked where the API checks `delay`)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number of seconds') from None


def _worker_flags(parser):
    parser.add_argument('-w', '--workers', type=int, metavar='N',
                        help='concurrent deliveries (default: [worker] concurrency)')
    parser.add_argument('-q', '--queue', action='append', metavar='QUEUE[,WEIGHT]',
                        dest='queues', help='queue to work; repeat for strict priority order, '
                        'add ,WEIGHT for weighted order (default: [worker] queues)')
    parser.add_argument('-k', '--worker-type', choices=('thread', 'process'),
                        help='thread: one process with N threads; process: one child per '
                        'CPU core sharing the N threads (default: [worker] worker_type)')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['sendmail']:       # sendmail's own flags and exit codes
        from .sendmail import main as sendmail_main
        return sendmail_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        config = config_module.load(args.config)
        warning = config.no_file_warning()
        if warning:
            print(warning, file=sys.stderr)
        validate_startup(config)
        setup_logging(config)
        return COMMANDS[args.command](config, args) or 0
    except ConfigError as exc:
        print(f'mailq: config error: {exc}', file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f'mailq: invalid mail: {exc}', file=sys.stderr)
        return 1
    except Unavailable as exc:
        print(f'mailq: {exc}', file=sys.stderr)
        return 1
    except MailqError as exc:
        print(f'mailq: {exc}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _queues(args):
    if not args.queues:
        return None
    try:
        return [config_module.parse_queue_spec(q) for q in args.queues]
    except ValueError as exc:
        raise ConfigError(str(exc), 'command line', key='-q') from None


class _Stopped(SystemExit):
    """SIGTERM in `mailq web`: unwinds waitress's loop, which then shuts its threads
    down. A SystemExit, because waitress lets only those (and KeyboardInterrupt) through
    a channel's handlers; any other exception there closes the channel and serves on."""


def cmd_web(config, args):
    from .runtime import Runtime
    from .web.app import serve
    log = logging.getLogger('mailq.web')

    received = []

    def on_signal(signum, frame):
        signal.signal(signum, signal.SIG_DFL)        # a second one stops at once
        received.append(signal.Signals(signum).name)
        raise _Stopped(received[-1])

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        serve(Runtime(config), args.host, args.port)
    except _Stopped:
        pass                # raised before waitress's loop ran, or outside it
    if received:            # waitress's loop ends on a SystemExit and returns
        log.info('received %s: stopping (a web holds no mails)', received[0])
    log.info('web stopped')


def cmd_worker(config, args):
    from .worker import run_worker
    return run_worker(config, args.workers, _queues(args), args.worker_type)


def cmd_run(config, args):
    from .devredis import ensure_redis
    from .runner import run_all
    private = ensure_redis(config.redis.url) if args.ensure_redis else None
    try:
        return run_all(config, args.host, args.port, args.workers, _queues(args),
                       args.worker_type)
    finally:
        if private is not None:
            private.stop()      # it is ours: it stops with us (after the worker's hand-back)


def cmd_send(config, args):
    from . import service
    from .runtime import Runtime
    if args.csv:
        return cmd_send_csv(config, args)
    if not args.to:
        raise ValidationError('to', 'is required (--to ADDR, or --csv FILE)')
    data = {'to': args.to}
    for field, value in (('cc', args.cc), ('bcc', args.bcc), ('template', args.template),
                         ('subject', args.subject), ('text', args.text), ('html', args.html),
                         ('from', args.sender), ('send_at', args.at), ('delay', args.delay),
                         ('queue', args.queue)):
        if value is not None:
            data[field] = value
    if args.context is not None:
        data['context'] = _json_context(args.context)
    result = service.send(Runtime(config), data, idempotency_key=args.idempotency_key)
    if result.get('duplicate'):
        print('mailq: idempotency key seen before: this is the earlier mail, nothing new '
              'was enqueued', file=sys.stderr)
    print(result['id'])


def _json_context(text):
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError('context', f'not valid JSON: {exc}') from None


def cmd_send_csv(config, args):
    from .bulk import enqueue_csv
    from .runtime import Runtime
    for flag, value in (('--to', args.to), ('--cc', args.cc), ('--bcc', args.bcc),
                        ('--subject', args.subject), ('--text', args.text),
                        ('--html', args.html), ('--delay', args.delay),
                        ('--idempotency-key', args.idempotency_key)):
        if value is not None:
            raise ValidationError(flag.lstrip('-'), 'not with --csv (use a template)')
    if not args.template:
        raise ValidationError('template', '--csv needs --template NAME')
    context = _json_context(args.context) if args.context is not None else None
    if context is not None and not isinstance(context, dict):
        raise ValidationError('context', 'must be a JSON object')
    summary = enqueue_csv(Runtime(config), args.csv, args.template, key_column=args.key_column,
                          queue=args.queue, send_at=args.at, context=context,
                          sender=args.sender)
    for line in summary.lines():
        print(line)
    return 1 if summary.rejected else 0


def cmd_stats(config, args):
    from . import service
    from .runtime import Runtime
    print(json.dumps(service.stats(Runtime(config)), indent=2))


def cmd_check(config, args):
    from .check import run_checks
    return run_checks(config, defaults=args.defaults)


def cmd_cron(config, args):
    from .cron.cli import cmd_cron
    return cmd_cron(config, args)


def cmd_suppress(config, args):
    from . import suppression
    from .runtime import Runtime
    rt = Runtime(config)
    if args.action == 'list':
        result = suppression.list_suppressions(rt, args.page, args.address or '')
        if args.json:
            print(json.dumps(result, indent=2))
        for row in [] if args.json else result['rows']:
            print(f"{row['address']}\t{row['reason']}\t{row['until'] or 'no end'}\t"
                  f"{row['reply'] or ''}")
        return 0
    if not args.address:
        raise ValidationError('address', f'suppress {args.action} needs an ADDRESS')
    result = (suppression.add(rt, args.address, args.reason) if args.action == 'add'
              else suppression.remove(rt, args.address))
    print(json.dumps(result) if args.json else f"{args.action}: {result['address']}")
    return 0


def cmd_submission(config, args):
    from .runtime import Runtime
    from .submission import serve
    serve(Runtime(config))


COMMANDS = {'web': cmd_web, 'worker': cmd_worker, 'run': cmd_run, 'send': cmd_send,
            'stats': cmd_stats, 'check': cmd_check, 'cron': cmd_cron, 'suppress': cmd_suppress,
            'submission': cmd_submission}

if __name__ == '__main__':
    sys.exit(main())
