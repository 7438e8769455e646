"""Command line: parse flags, load the config once, hand off to the package.

    mailq web [--host H] [--port P]
    mailq worker [-w N] [-q QUEUE[,WEIGHT]]... [-k thread|process]
    mailq run
    mailq send --to ADDR [--template NAME --context JSON | --subject S --text T] [--at ISO] [--queue Q]
    mailq stats
    mailq check
"""
import argparse
import json
import logging
import sys

from . import config as config_module
from .errors import ConfigError, MailqError, Unavailable, ValidationError
from .logs import setup_logging


def build_parser():
    parser = argparse.ArgumentParser(
        prog='mailq', description='A durable mail queue: HTTP API, SMTP workers, Redis.')
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('-c', '--config', metavar='PATH',
                        help='config file (default: $MAILQ_CONFIG, then ./mailq.ini)')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    web = sub.add_parser('web', parents=[common], help='serve the HTTP API and dashboard')
    web.add_argument('--host', help='address to bind (default: [web] host)')
    web.add_argument('--port', type=int, help='port (default: [web] port)')

    worker = sub.add_parser('worker', parents=[common], help='deliver queued mail')
    _worker_flags(worker)

    run = sub.add_parser('run', parents=[common],
                         help='web and worker in one process (one small box, development)')
    run.add_argument('--host', help='address to bind (default: [web] host)')
    run.add_argument('--port', type=int, help='port (default: [web] port)')
    _worker_flags(run)
    run.add_argument('--ensure-redis', action='store_true',
                     help='if no Redis answers at [redis] url, start a private one under ./var')

    send = sub.add_parser('send', parents=[common], help='enqueue one mail; prints its id')
    send.add_argument('--to', required=True, action='append', help='recipient (repeatable)')
    send.add_argument('--template', help='mail template name')
    send.add_argument('--context', default=None, help='template context as a JSON object')
    send.add_argument('--subject')
    send.add_argument('--text')
    send.add_argument('--html')
    send.add_argument('--from', dest='sender')
    send.add_argument('--at', help='send at this ISO 8601 time (with offset)')
    send.add_argument('--queue')

    sub.add_parser('stats', parents=[common], help='counts per state and per queue (JSON)')
    sub.add_parser('check', parents=[common],
                   help='validate config, reach Redis and SMTP, render every template')
    return parser


def _worker_flags(parser):
    parser.add_argument('-w', '--workers', type=int, metavar='N',
                        help='concurrent deliveries (default: [worker] concurrency)')
    parser.add_argument('-q', '--queue', action='append', metavar='QUEUE[,WEIGHT]',
                        dest='queues', help='queue to work; repeat for strict priority order, '
                        'add ,WEIGHT for weighted order (default: [worker] queues)')
    parser.add_argument('-k', '--worker-type', choices=('thread', 'process'),
                        help='run deliveries in threads or processes (default: thread)')


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        config = config_module.load(args.config)
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


def cmd_web(config, args):
    from .runtime import Runtime
    from .web.app import serve
    serve(Runtime(config), args.host, args.port)


def cmd_worker(config, args):
    from .worker import run_worker
    return run_worker(config, args.workers, _queues(args), args.worker_type)


def cmd_run(config, args):
    from .devredis import ensure_redis
    from .runner import run_all
    if args.ensure_redis:
        ensure_redis(config.redis.url)
    return run_all(config, args.host, args.port, args.workers, _queues(args), args.worker_type)


def cmd_send(config, args):
    from . import service
    from .runtime import Runtime
    data = {'to': args.to}
    for field, value in (('template', args.template), ('subject', args.subject),
                         ('text', args.text), ('html', args.html), ('from', args.sender),
                         ('send_at', args.at), ('queue', args.queue)):
        if value is not None:
            data[field] = value
    if args.context is not None:
        try:
            data['context'] = json.loads(args.context)
        except ValueError as exc:
            raise ValidationError('context', f'not valid JSON: {exc}') from None
    result = service.send(Runtime(config), data)
    print(result['id'])


def cmd_stats(config, args):
    from . import service
    from .runtime import Runtime
    print(json.dumps(service.stats(Runtime(config)), indent=2))


def cmd_check(config, args):
    from .check import run_checks
    return run_checks(config)


COMMANDS = {'web': cmd_web, 'worker': cmd_worker, 'run': cmd_run, 'send': cmd_send,
            'stats': cmd_stats, 'check': cmd_check}

if __name__ == '__main__':
    sys.exit(main())
