"""Read mailq.ini once into typed, validated objects.

Nothing else in mailq reads the INI file or the environment: every role gets
a `Config` from `load()` and passes it on. A bad value fails here, at start-up,
naming the file, section and key and what is allowed. This module sits at the
bottom: it imports no other part of mailq but errors and redisconn. The checks
that need the composer or the cron parser are `startup.validate_startup()`.
"""
import configparser
import dataclasses
import json
import os
import re
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ConfigError
from .redisconn import parse_sentinel_url, redacted_url, redis_passwords

ENV_PREFIX = 'MAILQ_'
QUEUE_NAME = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')


# -- value parsers: each takes the raw string and returns a value or raises ValueError.

def _str(raw):
    return raw.strip()


def _number(kind, raw):
    """int() or float() of the text, with a message a config reader understands."""
    try:
        return kind(raw.strip())
    except ValueError:
        raise ValueError('must be a whole number' if kind is int else 'must be a number') \
            from None


def _int(minimum=None, maximum=None):
    def parse(raw):
        value = _number(int, raw)
        if minimum is not None and value < minimum:
            raise ValueError(f'must be >= {minimum}')
        if maximum is not None and value > maximum:
            raise ValueError(f'must be <= {maximum}')
        return value
    parse.allowed = 'a whole number' + (f' >= {minimum}' if minimum is not None else '') \
        + (f' and <= {maximum}' if maximum is not None else '')
    return parse


def _float(minimum=0.0):
    def parse(raw):
        value = _number(float, raw)
        if value < minimum:
            raise ValueError(f'must be >= {minimum}')
        return value
    parse.allowed = f'a number >= {minimum}'
    return parse


def _bool(raw):
    value = raw.strip().lower()
    if value in ('1', 'yes', 'true', 'on'):
        return True
    if value in ('0', 'no', 'false', 'off'):
        return False
    raise ValueError('not a boolean')


_bool.allowed = 'yes or no'


def _choice(*options):
    def parse(raw):
        value = raw.strip().lower()
        if value not in options:
            raise ValueError(f'{value!r} is not allowed')
        return value
    parse.allowed = ' | '.join(options)
    return parse


def _queue_list(raw):
    """`mailers, default` or `mailers,3 default,1` -> [(name, weight)]."""
    items = []
    for part in re.split(r'[\s;]+|,\s+', raw.strip()):
        if not part:
            continue
        items.append(parse_queue_spec(part))
    if not items:
        raise ValueError('at least one queue is needed')
    return tuple(items)


_queue_list.allowed = 'queue names separated by ", " (name,weight for weighted order)'


def parse_queue_spec(spec):
    """`mailers` -> ('mailers', 0); `mailers,3` -> ('mailers', 3). Weight 0 means strict order."""
    name, _, weight = spec.strip().partition(',')
    if not QUEUE_NAME.match(name):
        raise ValueError(f'bad queue name {name!r} (letters, digits, _ . -)')
    if weight and (not weight.isdigit() or int(weight) < 1):
        raise ValueError(f'bad weight {weight!r} in {spec!r} (a whole number >= 1)')
    return name, int(weight or 0)


# A recipient pattern: an address, `*@domain`, `*@*.domain`; * and ? are wildcards.
RECIPIENT_PATTERN = re.compile(r'^[A-Za-z0-9!#$%&\'*+/=?^_`{|}~.-]+@[A-Za-z0-9*?.-]+$')
ADDRESS = re.compile(r'^[A-Za-z0-9!#$%&\'+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$')


def _recipient_patterns(raw):
    """`*@example.com, qa@partner.test` -> ('*@example.com', 'qa@partner.test')."""
    items = tuple(p.strip().lower() for p in re.split(r'[\s,;]+', raw) if p.strip())
    for item in items:
        if not RECIPIENT_PATTERN.match(item):
            raise ValueError(f'{item!r} is not an address or a pattern like *@example.com')
    return items


_recipient_patterns.allowed = 'addresses or patterns like *@example.com, separated by ", "'


def _one_address(raw):
    value = raw.strip()
    if value and not ADDRESS.match(value):
        raise ValueError(f'{value!r} is not one plain address (name@example.com)')
    return value


_one_address.allowed = 'one address such as qa@example.com, or empty'


def _json_object(raw):
    value = json.loads(raw) if raw.strip() else {}
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object')
    return value


_json_object.allowed = 'a JSON object'


def _secret(raw):
    """A configured key, or a random one for this process when empty."""
    return raw.strip() or secrets.token_hex(32)


def _optional(parse):
    """Empty means None (no limit); otherwise `parse`."""
    def wrapped(raw):
        return parse(raw) if raw.strip() else None
    wrapped.allowed = 'empty (no limit) or ' + getattr(parse, 'allowed', 'a value')
    return wrapped


def _positive(kind):
    def parse(raw):
        value = _number(kind, raw)
        if value <= 0:
            raise ValueError('must be > 0')
        return value
    parse.allowed = ('a whole number' if kind is int else 'a number') + ' > 0'
    return parse


# A [throttle:NAME] domains entry: a domain, or *.domain for its subdomains.
DOMAIN_PATTERN = re.compile(r'(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*')


def _domain_list(raw):
    """`slow.example, *.example.com` -> lower-case patterns."""
    names = tuple(n.strip().lower().rstrip('.') for n in re.split(r'[\s,]+', raw) if n.strip())
    for name in names:
        if not DOMAIN_PATTERN.fullmatch(name):
            raise ValueError(f'{name!r} is not a domain (or *.domain for its subdomains)')
    if not names:
        raise ValueError('at least one domain is needed')
    return names


_domain_list.allowed = 'domains separated by ", "; *.example.com for its subdomains'


def _path(raw):
    return Path(raw.strip()).expanduser() if raw.strip() else None


@dataclass(frozen=True)
class RedisConfig:
    url: str = 'redis://127.0.0.1:6379/0'
    prefix: str = 'mailq'

    _parse = {'url': _str, 'prefix': _str}


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = 25
    queues: tuple = (('mailers', 0), ('default', 0))
    default_queue: str = 'mailers'
    worker_type: str = 'thread'
    max_retries: int = 25
    retry_base: float = 60.0
    retry_factor: float = 2.0
    retry_max_delay: float = 21600.0
    retry_jitter: float = 0.1
    shutdown_timeout: float = 25.0
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    scheduler_interval: float = 0.25
    dead_max: int = 10000
    dead_max_days: int = 180
    keep_sent_days: int = 7
    keep_sent_bodies: float = 24.0
    cpu_affinity: str = 'auto'

    _parse = {
        'concurrency': _int(1, 1000), 'queues': _queue_list, 'default_queue': _str,
        'worker_type': _choice('thread', 'process'), 'max_retries': _int(0),
        'retry_base': _float(0), 'retry_factor': _float(1), 'retry_max_delay': _float(0),
        'retry_jitter': _float(0), 'shutdown_timeout': _float(0),
        'heartbeat_interval': _float(0.1), 'heartbeat_timeout': _float(1),
        'scheduler_interval': _float(0.05), 'dead_max': _int(1), 'dead_max_days': _int(1),
        'keep_sent_days': _int(0), 'keep_sent_bodies': _float(0),
        'cpu_affinity': _choice('auto', 'none'),
    }

    @property
    def queue_names(self):
        return [name for name, _ in self.queues]

    @property
    def sent_body_ms(self):
        """How long a sent mail keeps its body, in ms: keep_sent_bodies, never past the
        record's keep_sent_days; 0 keeps it as long as the record."""
        body, record = self.keep_sent_bodies * 3600_000, self.keep_sent_days * 86400_000
        return int(min(body or record, record or body))


@dataclass(frozen=True)
class SMTPConfig:
    transport: str = 'outbox'
    host: str = '127.0.0.1'
    port: int = 25
    security: str = 'none'
    username: str = ''
    password: str = ''
    timeout: float = 30.0
    sender: str = 'mailq@localhost'
    ca_file: object = None
    verify: bool = True
    auth_failure: str = 'permanent'
    outbox_max: int = 1000
    # Staging: only these recipients get mail (the rest is kept in the outbox), or
    # every mail goes to redirect_to instead (X-Original-To names the recipients).
    allow_recipients: tuple = ()
    redirect_to: str = ''
    # The relay a caught mail is released through; empty: the main relay (transport = smtp).
    release_host: str = ''
    release_port: int = 25
    release_security: str = 'none'
    release_username: str = ''
    release_password: str = ''
    # Limits of the relay, shared by every worker (store/limits.py); None: no limit.
    rate: float = None              # messages per second
    burst: int = None               # tokens the bucket holds (None: one second's worth)
    max_connections: int = None     # open SMTP sessions, all workers together
    daily_quota: int = None         # messages in a rolling 24 hours
    greeting_pause: float = None    # seconds the relay is paused after a 421 greeting

    _parse = {
        'transport': _choice('outbox', 'smtp', 'console'), 'host': _str, 'port': _int(1, 65535),
        'security': _choice('none', 'starttls', 'tls'), 'username': _str, 'password': _str,
        'timeout': _float(0.1), 'from': _str, 'ca_file': _path, 'verify': _bool,
        'auth_failure': _choice('permanent', 'transient'), 'outbox_max': _int(1),
        'allow_recipients': _recipient_patterns, 'redirect_to': _one_address,
        'release_host': _str, 'release_port': _int(1, 65535),
        'release_security': _choice('none', 'starttls', 'tls'), 'release_username': _str,
        'release_password': _str,
        'rate': _optional(_positive(float)), 'burst': _optional(_positive(int)),
        'max_connections': _optional(_positive(int)),
        'daily_quota': _optional(_positive(int)),
        'greeting_pause': _optional(_positive(float)),
    }
    _rename = {'from': 'sender'}

    @property
    def staging(self):
        """'allow', 'redirect' or '' (every recipient gets its mail)."""
        if self.redirect_to:
            return 'redirect'
        return 'allow' if self.allow_recipients else ''

    @property
    def staging_text(self):
        """The banner: what staging does to mail, or ''."""
        if self.staging == 'redirect':
            return f'staging: every mail goes to {self.redirect_to} instead of its recipients'
        if self.staging == 'allow':
            return (f'staging: only {", ".join(self.allow_recipients)} receive mail; '
                    'mail to anyone else is kept in the outbox')
        return ''

    def release_relay(self):
        """The SMTPConfig a caught mail is released through, or None when there is none."""
        import dataclasses
        if self.release_host:
            return dataclasses.replace(
                self, transport='smtp', host=self.release_host, port=self.release_port,
                security=self.release_security, username=self.release_username,
                password=self.release_password, allow_recipients=(), redirect_to='')
        if self.transport == 'smtp':
            return dataclasses.replace(self, allow_recipients=(), redirect_to='')
        return None


# A [web] allowed_hosts entry: *, a name (.name: it and its subdomains), an IPv4 or IPv6 address.
HOST_NAME = re.compile(r'\*|\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*|[0-9a-f.]*:[0-9a-f.]*:[0-9a-f:.]*')


def _host_list(raw):
    """`mailq.example, .example.org, [::1]` -> names as Host headers carry them, lower case."""
    names = tuple(n.strip().lower().strip('[]').rstrip('.') for n in raw.split(',') if n.strip())
    for name in names:
        if not HOST_NAME.fullmatch(name):
            raise ValueError(f'{name!r} is not a host name (no scheme, port or path)')
    return names


_host_list.allowed = 'host names separated by ", "; .example.org for it and its subdomains; *'


@dataclass(frozen=True)
class WebConfig:
    host: str = '127.0.0.1'
    port: int = 8080
    username: str = ''
    password: str = ''
    api_token: str = ''
    threads: int = 8
    processes: int = 1
    secret: str = field(default_factory=lambda: _secret(''))
    allowed_hosts: tuple = ()       # besides the loopback names and `host`
    connection_limit: int = 1000
    channel_timeout: float = 30.0
    cleanup_interval: float = 5.0
    backlog: int = 1024
    trusted_proxy: str = ''         # whose X-Forwarded-Proto is believed
    event_streams: int = 4          # live pages (GET /api/events) at once; each holds a thread
    cpu_affinity: str = 'auto'      # a web process's threads on one CPU (affinity.py)

    _parse = {'host': _str, 'port': _int(1, 65535), 'username': _str, 'password': _str,
              'api_token': _str, 'threads': _int(1, 256), 'processes': _int(1, 64),
              'secret': _secret, 'allowed_hosts': _host_list,
              'connection_limit': _int(10, 100000), 'channel_timeout': _float(1),
              'cleanup_interval': _float(0.5), 'backlog': _int(1, 65535),
              'trusted_proxy': _str, 'event_streams': _int(0, 255),
              'cpu_affinity': _choice('auto', 'none')}

    @property
    def has_auth(self):
        return bool((self.username and self.password) or self.api_token)


@dataclass(frozen=True)
class TemplatesConfig:
    path: object = None           # None: the templates shipped with mailq

    _parse = {'path': _path}


@dataclass(frozen=True)
class LimitsConfig:
    max_body_bytes: int = 10 * 1024 * 1024
    max_attachment_bytes: int = 5 * 1024 * 1024
    max_recipients: int = 100
    max_batch: int = 1000
    render_timeout: float = 2.0
    idempotency_ttl: int = 86400

    _parse = {'max_body_bytes': _int(1024), 'max_attachment_bytes': _int(1),
              'max_recipients': _int(1), 'max_batch': _int(1), 'render_timeout': _float(0.01),
              'idempotency_ttl': _int(1)}


@dataclass(frozen=True)
class LogConfig:
    level: str = 'info'
    format: str = 'text'
    recipients: str = 'domain'

    _parse = {'level': _choice('debug', 'info', 'warning', 'error'),
              'format': _choice('text', 'json'), 'recipients': _choice('domain', 'full')}


@dataclass(frozen=True)
class MailqConfig:
    imports: tuple = ()

    _parse = {'imports': lambda raw: tuple(p.strip() for p in raw.split(',') if p.strip())}


@dataclass(frozen=True)
class CronDefaults:
    timezone: str = 'UTC'

    _parse = {'timezone': _str}


@dataclass(frozen=True)
class CronJobConfig:
    name: str
    schedule: str = ''
    timezone: str = ''
    template: str = ''
    callable: str = ''
    to: str = ''
    context: dict = field(default_factory=dict)
    queue: str = ''
    catch_up: int = 3600

    _parse = {'schedule': _str, 'timezone': _str, 'template': _str, 'callable': _str,
              'to': _str, 'context': _json_object, 'queue': _str, 'catch_up': _int(0)}


EVENT_TYPES = ('mail.sent', 'mail.partly_sent', 'mail.retrying', 'mail.dead',
               'mail.suppressed', 'mail.cancelled')
# Only when named: a burst held by a limiter would otherwise double an endpoint's POSTs.
OPT_IN_EVENTS = ('mail.held',)


def _event_list(raw):
    """`mail.sent, mail.dead` (or `*` / empty: every type) -> a tuple of types."""
    names = tuple(p for p in re.split(r'[\s,]+', raw.strip()) if p)
    if not names or names == ('*',):
        return EVENT_TYPES
    for name in names:
        if name not in EVENT_TYPES + OPT_IN_EVENTS:
            raise ValueError(f'unknown event {name!r}')
    return tuple(dict.fromkeys(names))


_event_list.allowed = ('a comma-separated list of ' + ', '.join(EVENT_TYPES + OPT_IN_EVENTS)
                       + ' (or *: all but ' + ', '.join(OPT_IN_EVENTS) + ')')


def _http_url(raw):
    value = raw.strip()
    if not re.match(r'^https?://[^/\s]+', value) or any(c.isspace() for c in value):
        raise ValueError('must be an http:// or https:// URL')
    return value


_http_url.allowed = 'an http:// or https:// URL'


@dataclass(frozen=True)
class SuppressionConfig:
    days: int = 30              # how long an automatic suppression lasts
    policy: bool = False        # also suppress on policy and spam refusals (5.7.x)

    _parse = {'days': _int(1), 'policy': _bool}


@dataclass(frozen=True)
class WebhookConfig:
    """One [webhook:NAME] endpoint. URLs come from the config only, never the API."""
    name: str
    url: str = ''
    secret: str = ''
    events: tuple = EVENT_TYPES
    timeout: float = 10.0
    retry_base: float = 10.0          # first retry after this, then doubling
    retry_max_delay: float = 3600.0   # at most this between two attempts
    retry_for: float = 3 * 86400.0    # then the event is given up (Stripe: 3 days)
    pause_after: int = 10             # failures in a row that pause the endpoint

    _parse = {'url': _http_url, 'secret': _str, 'events': _event_list,
              'timeout': _float(0.1), 'retry_base': _float(0.1),
              'retry_max_delay': _float(0.1), 'retry_for': _float(3 * 86400.0),
              'pause_after': _int(1)}


@dataclass(frozen=True)
class ThrottleConfig:
    """One [throttle:NAME] group of recipient domains with its own limits."""
    name: str
    domains: tuple = ()
    rate: float = None
    burst: int = None
    concurrency: int = None         # mails to the group in flight, all workers together
    daily_quota: int = None

    _parse = {'domains': _domain_list, 'rate': _optional(_positive(float)),
              'burst': _optional(_positive(int)),
              'concurrency': _optional(_positive(int)),
              'daily_quota': _optional(_positive(int))}


@dataclass(frozen=True)
class SubmissionConfig:
    """The SMTP submission listener (`mailq submission`, and `mailq run` when enabled)."""
    enabled: bool = False
    host: str = '127.0.0.1'
    port: int = 2525
    username: str = ''
    password: str = ''
    tls_cert: object = None
    tls_key: object = None
    max_message_bytes: int = 10 * 1024 * 1024
    cpu_affinity: str = 'auto'      # `mailq submission`'s threads on one CPU (affinity.py)
    event_loop: str = 'auto'        # auto: uvloop's when it is installed (listener.py)

    _parse = {'enabled': _bool, 'host': _str, 'port': _int(0, 65535), 'username': _str,
              'password': _str, 'tls_cert': _path, 'tls_key': _path,
              'max_message_bytes': _int(1024), 'cpu_affinity': _choice('auto', 'none'),
              'event_loop': _choice('auto', 'asyncio')}

    @property
    def has_auth(self):
        return bool(self.username and self.password)

    @property
    def has_tls(self):
        return bool(self.tls_cert and self.tls_key)


SECTIONS = {
    'redis': RedisConfig, 'worker': WorkerConfig, 'smtp': SMTPConfig, 'web': WebConfig,
    'templates': TemplatesConfig, 'limits': LimitsConfig, 'log': LogConfig,
    'mailq': MailqConfig, 'cron': CronDefaults, 'suppression': SuppressionConfig,
    'submission': SubmissionConfig,
}


@dataclass(frozen=True)
class Config:
    source: str
    redis: RedisConfig
    worker: WorkerConfig
    smtp: SMTPConfig
    web: WebConfig
    templates: TemplatesConfig
    limits: LimitsConfig
    log: LogConfig
    mailq: MailqConfig
    cron: CronDefaults
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)
    cron_jobs: tuple = ()
    suppression: SuppressionConfig = SuppressionConfig()
    webhooks: tuple = ()            # WebhookConfig, one per [webhook:NAME]
    throttles: tuple = ()           # ThrottleConfig, one per [throttle:NAME]
    from_environment: tuple = ()    # ((section, key, '$MAILQ_...'), ...): values set there
    file_found: bool = True         # False: no -c, no $MAILQ_CONFIG, and no ./mailq.ini

    def no_file_warning(self):
        """None when a config file was read; else what every role says on stderr."""
        if self.file_found:
            return None
        return (f'mailq: WARNING: no config file found: looked for {Path(self.source).resolve()} '
                '(no -c/--config given, $MAILQ_CONFIG not set). Running on built-in defaults '
                f'and MAILQ_* variables: transport = {self.smtp.transport}'
                + (' (mail is kept in the outbox, never sent)'
                   if self.smtp.transport == 'outbox' else '')
                + f', Redis at {redacted_url(self.redis.url)}.')

    def replace(self, **sections):
        """A copy with some sections swapped, e.g. for CLI flags like --port."""
        return Config(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **sections})

    def secrets(self):
        """Values that must never appear in a log line or a page."""
        values = [self.smtp.password, self.smtp.release_password, self.web.password,
                  self.web.api_token, self.web.secret, self.submission.password]
        values += [hook.secret for hook in self.webhooks]
        values += redis_passwords(self.redis.url)
        return [v for v in values if v]

    def error(self, message, section, key):
        """A ConfigError that names where the value came from: $MAILQ_... or the file."""
        for where in self.from_environment:
            if where[:2] == (section, key):
                return ConfigError(message, where[2])
        return ConfigError(message, self.source, section, key)


def find_config_path(explicit=None, environ=None):
    """The flag, then $MAILQ_CONFIG, then ./mailq.ini (which may be absent)."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get('MAILQ_CONFIG'):
        return Path(environ['MAILQ_CONFIG'])
    return Path('mailq.ini')


def load(path=None, environ=None):
    """Parse the config file (if any) plus MAILQ_<SECTION>_<KEY> overrides."""
    environ = os.environ if environ is None else environ
    explicit = bool(path or environ.get('MAILQ_CONFIG'))
    path = find_config_path(path, environ)
    source = str(path)
    # Comments are whole lines only: `password = ab ;cd` is the password 'ab ;cd'.
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str.lower
    if path.exists():
        try:
            parser.read(path, encoding='utf-8')
        except configparser.Error as exc:
            raise ConfigError(f'cannot parse: {exc}', source) from None
    elif explicit:
        raise ConfigError('config file not found', source)

    for name in parser.sections():
        if name not in SECTIONS and not name.startswith(('cron:', 'webhook:', 'throttle:')):
            raise ConfigError(f'unknown section (known: {", ".join(SECTIONS)}, cron:NAME, '
                              f'webhook:NAME, throttle:NAME)', source, name)

    from_env = {name: _env_values(environ, name) for name in SECTIONS}
    built = {name: _build(cls, {**_file_values(parser, source, name), **from_env[name]})
             for name, cls in SECTIONS.items()}
    jobs = tuple(_build(CronJobConfig, _file_values(parser, source, name),
                        name=name.split(':', 1)[1].strip())
                 for name in parser.sections() if name.startswith('cron:'))
    hooks = _webhooks(parser, source, environ)
    throttles = _throttles(parser, source)
    base = path.parent if path.exists() else Path('.')
    built['templates'] = TemplatesConfig(path=_relative_to(base, built['templates'].path))
    sub = built['submission']
    built['submission'] = dataclasses.replace(sub, tls_cert=_relative_to(base, sub.tls_cert),
                                              tls_key=_relative_to(base, sub.tls_key))
    config = Config(source=source, cron_jobs=jobs, webhooks=hooks, throttles=throttles,
                    **built,
                    file_found=path.exists(),
                    from_environment=tuple((section, key, where[0])
                                           for section, values in from_env.items()
                                           for key, (_, where) in values.items()))
    _check_cross_fields(config)
    return config


def _webhooks(parser, source, environ):
    """The [webhook:NAME] sections, each key overridable by MAILQ_WEBHOOK_<NAME>_<KEY>
    (so the secret can stay out of the file); url and secret are required."""
    names = {}
    for section in parser.sections():
        if not section.startswith('webhook:'):
            continue
        name = section.split(':', 1)[1].strip()
        if not QUEUE_NAME.match(name):
            raise ConfigError('bad endpoint name (letters, digits, _ . -)', source, section)
        names[name] = section
    from_env = _webhook_env_values(environ, names)
    hooks = []
    for name, section in names.items():
        hook = _build(WebhookConfig, {**_file_values(parser, source, section),
                                      **from_env.get(name, {})}, name=name)
        for key in ('url', 'secret'):
            if not getattr(hook, key):
                variable = f"{ENV_PREFIX}WEBHOOK_{re.sub(r'[.-]', '_', name).upper()}_{key.upper()}"
                raise ConfigError(f'is required (in the file or ${variable})', source, section,
                                  key)
        hooks.append(hook)
    return tuple(hooks)


def _webhook_env_values(environ, names):
    """{endpoint name: {key: (text, where)}} of the MAILQ_WEBHOOK_<NAME>_<KEY> variables;
    NAME is the endpoint's in upper case, '-' and '.' as '_' (the longest name matching
    wins). A variable that names no [webhook:NAME] section is an error."""
    prefix = f'{ENV_PREFIX}WEBHOOK_'
    spelled = sorted(((re.sub(r'[.-]', '_', name).upper() + '_', name) for name in names),
                     key=lambda pair: -len(pair[0]))
    found = {}
    for variable, text in environ.items():
        if not variable.startswith(prefix):
            continue
        rest = variable[len(prefix):]
        name = next((n for spelling, n in spelled if rest.startswith(spelling)), None)
        if name is None:
            raise ConfigError('names no [webhook:NAME] section of the config file',
                              f'${variable}')
        key = rest[len(re.sub(r'[.-]', '_', name)) + 1:].lower()
        found.setdefault(name, {})[key] = (text, (f'${variable}',))
    return found


def _throttles(parser, source):
    """The [throttle:NAME] sections; domains are required, and a domain belongs to one
    group only."""
    groups, owner = [], {}
    for section in parser.sections():
        if not section.startswith('throttle:'):
            continue
        name = section.split(':', 1)[1].strip()
        if not QUEUE_NAME.match(name) or name == 'relay':
            raise ConfigError('bad group name (letters, digits, _ . -; not "relay")',
                              source, section)
        group = _build(ThrottleConfig, _file_values(parser, source, section), name=name)
        if not group.domains:
            raise ConfigError('is required', source, section, 'domains')
        for domain in group.domains:
            if domain in owner:
                raise ConfigError(f'{domain!r} is already in [throttle:{owner[domain]}]',
                                  source, section, 'domains')
            owner[domain] = name
        groups.append(group)
    return tuple(groups)


def _relative_to(base, path):
    """Relative paths in the file are relative to the file, not to the cwd."""
    return path if path is None or path.is_absolute() else (base / path).resolve()


def _file_values(parser, source, section):
    """{key: (text, where)}; `where` is what a ConfigError about the value names."""
    if not parser.has_section(section):
        return {}
    return {key: (text, (source, section, key)) for key, text in parser[section].items()}


def _env_values(environ, section):
    """The MAILQ_<SECTION>_<KEY> overrides of one section, each blamed on its variable."""
    prefix = f'{ENV_PREFIX}{section.upper()}_'
    return {name[len(prefix):].lower(): (text, (f'${name}',))
            for name, text in environ.items() if name.startswith(prefix)}


def _build(cls, raw, **extra):
    parsers = cls._parse
    rename = getattr(cls, '_rename', {})
    values = dict(extra)
    for key, (text, where) in raw.items():
        if key not in parsers:
            raise ConfigError(f'unknown key {key!r} (known: {", ".join(parsers)})', *where)
        parse = parsers[key]
        try:
            values[rename.get(key, key)] = parse(text)
        except (ValueError, json.JSONDecodeError) as exc:
            allowed = getattr(parse, 'allowed', None)
            hint = f'; allowed: {allowed}' if allowed else ''
            raise ConfigError(f'bad value {text!r}: {exc}{hint}', *where) from None
    return cls(**values)


def _check_cross_fields(config):
    if config.worker.default_queue not in config.worker.queue_names:
        raise config.error(f'{config.worker.default_queue!r} is not one of [worker] queues',
                           'worker', 'default_queue')
    if config.smtp.transport == 'smtp' and not config.smtp.host:
        raise config.error('needed when transport = smtp', 'smtp', 'host')
    if config.smtp.redirect_to and config.smtp.allow_recipients:
        raise config.error('set redirect_to or allow_recipients, not both (redirect_to '
                           'sends everything to one address)', 'smtp', 'redirect_to')
    if config.web.event_streams >= config.web.threads:
        raise config.error(f'must be below [web] threads ({config.web.threads}): each live '
                           'page holds a thread, and requests need one too', 'web',
                           'event_streams')
    if bool(config.web.username) != bool(config.web.password):
        raise config.error('set both username and password, or neither', 'web',
                           'password' if config.web.username else 'username')
    if not re.match(r'^(redis|rediss|unix|redis\+sentinel)://', config.redis.url):
        raise config.error('must start with redis://, rediss://, unix:// or redis+sentinel://',
                           'redis', 'url')
    _check_submission(config)
    if config.redis.url.startswith('redis+sentinel://'):
        try:
            parse_sentinel_url(config.redis.url)
        except ValueError as exc:
            raise config.error(str(exc), 'redis', 'url') from None


def _check_submission(config):
    """[submission]: credentials and certificate come in pairs, and the files exist."""
    sub = config.submission
    if bool(sub.username) != bool(sub.password):
        raise config.error('set both username and password, or neither', 'submission',
                           'password' if sub.username else 'username')
    if bool(sub.tls_cert) != bool(sub.tls_key):
        raise config.error('set both tls_cert and tls_key, or neither', 'submission',
                           'tls_key' if sub.tls_cert else 'tls_cert')
    for key in ('tls_cert', 'tls_key'):
        path = getattr(sub, key)
        if path is not None and not path.is_file():
            raise config.error(f'no such file: {path}', 'submission', key)
