"""The data layer's borders, read from the source (nothing is run).

Outside mailq/store/ no module sends a Redis command: it may hold a client to pass it
on, but calls nothing on it. redisconn.py owns connections (and asks the server about
itself); runtime.py builds the one client a process uses. And no Lua script builds a
key name: every key a `redis.call` touches is a KEYS entry (tests/test_store.py runs
every script with a check on each call; this covers the branches no test drives).
"""
import ast
import re

from support.procs import REPO_ROOT

MAILQ = REPO_ROOT / 'mailq'
SCRIPTS = MAILQ / 'store' / 'scripts'

# -- Python: who talks to Redis ----------------------------------------------------

TALKS = {MAILQ / 'redisconn.py'}              # connections, outage and persistence checks
BUILDS_CLIENT = TALKS | {MAILQ / 'runtime.py'}

# Methods no other object of ours has: a call of one is a Redis command on whatever.
REDIS_ONLY = {'pipeline', 'pubsub', 'register_script', 'execute_command', 'eval', 'evalsha',
              'script_load', 'script_flush', 'fcall'}
# Calls that make a client (or a pool that is one in all but name).
CLIENT_MAKERS = {'Redis', 'StrictRedis', 'from_url', 'master_for', 'slave_for'}


def _chain(node):
    """'rt.store.redis' of an attribute chain, or None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _chain(node.value)
        return base and f'{base}.{node.attr}'
    return None


def _makes_client(node):
    return (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in CLIENT_MAKERS)


def _is_client(node, clients):
    """Is `node` a Redis client: x.redis, a client made here, a pipeline, a name bound
    to one of those, or a command chained on one (pipe.hget(...).hget(...))?"""
    if isinstance(node, ast.Attribute) and (node.attr == 'redis' or node.attr == 'conn'
                                            and (_chain(node.value) or '').endswith('storage')):
        return True                     # x.redis, and huey.storage.conn (Huey's own client)
    if _chain(node) in clients or _makes_client(node):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in {'pipeline', 'pubsub'} or _is_client(node.func.value, clients)
    return False


def _clients(tree):
    """Names (and self.attrs) bound anywhere in the module to a Redis client."""
    clients, grew = set(), True
    while grew:
        grew = False
        for node in ast.walk(tree):
            targets, value = [], None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                targets, value = [node.target], node.value
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                targets, value = [node.optional_vars], node.context_expr
            if value is None or not _is_client(value, clients):
                continue
            for name in filter(None, map(_chain, targets)):
                if name not in clients:
                    clients.add(name)
                    grew = True
    return clients


def redis_calls(source, path='<source>', builds_client=False):
    """['line: call'] of every Redis command sent (or client made) in `source`."""
    tree = ast.parse(source, str(path))
    clients = _clients(tree)
    found = []
    for node in sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                       key=lambda n: (n.lineno, n.col_offset)):
        func = node.func
        if _makes_client(node) and not builds_client:
            found.append(f'{node.lineno}: {ast.unparse(func)}(...) makes a client')
        elif isinstance(func, ast.Attribute) and (func.attr in REDIS_ONLY
                                                  or _is_client(func.value, clients)):
            found.append(f'{node.lineno}: {ast.unparse(func)}(...)')
    return found


def test_the_checker_finds_redis_commands():
    """The control: each way of reaching Redis is found; holding a client is not."""
    source = '''
import redis
def f(rt, store, smtp):
    rt.redis.hget('k', 'f')
    store.redis.pipeline(transaction=False).llen('q').execute()
    r = rt.redis
    r.lpush('q', 1)
    with rt.redis.pipeline() as pipe:
        pipe.zadd('z', {'a': 1})
    redis.Redis(connection_pool=None).ping()
    anything.register_script('return 1')
    self.client = redis.StrictRedis.from_url('redis://')
    self.client.get('x')
    other.execute_command('PING')
    persistence_warning(rt.redis)
    smtp.quit()
    rt.store.queue('q').size()
    d = {}; d.get('x')
    rt.huey.storage.conn.lpush('huey.redis.mailq', 'task')
'''
    found = redis_calls(source)
    assert [line.split(':')[0] for line in found] == \
        ['4', '5', '5', '5', '7', '8', '9', '10', '10', '11', '12', '13', '14', '19'], found


def test_outside_the_store_no_module_sends_a_redis_command():
    offenders = []
    for path in sorted(MAILQ.rglob('*.py')):
        if 'store' in path.relative_to(MAILQ).parts or path in TALKS:
            continue
        offenders += [f'{path.relative_to(REPO_ROOT)}:{line}'
                      for line in redis_calls(path.read_text(), path, path in BUILDS_CLIENT)]
    assert offenders == []


# -- Lua: every key through KEYS ------------------------------------------------------

TOKEN = re.compile(r"""--\[(?P<eq>=*)\[.*?\](?P=eq)\]|--[^\n]*|\[(?P<leq>=*)\[.*?\](?P=leq)\]
                       |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"|\.\.\.?|[A-Za-z_]\w*|\d[\w.]*
                       |==|~=|<=|>=|\S""", re.VERBOSE | re.DOTALL)
# Which arguments of a command are keys (1-based, after the command's name); any other
# command takes its key first. A script using a command with keys elsewhere must be
# added here, or the check would read the wrong argument.
KEY_ARGS = {'DEL': 'all', 'UNLINK': 'all', 'EXISTS': 'all', 'MGET': 'all', 'TOUCH': 'all',
            'LMOVE': (1, 2), 'BLMOVE': (1, 2), 'RPOPLPUSH': (1, 2), 'SMOVE': (1, 2),
            'RENAME': (1, 2), 'RENAMENX': (1, 2), 'COPY': (1, 2)}
MULTI_KEY = {'ZUNIONSTORE', 'ZINTERSTORE', 'ZDIFFSTORE', 'SUNIONSTORE', 'SINTERSTORE',
             'SDIFFSTORE', 'ZUNION', 'ZINTER', 'ZDIFF', 'SUNION', 'SINTER', 'SDIFF', 'MSET',
             'MSETNX', 'ZRANGESTORE', 'GEORADIUS', 'SORT', 'XREAD', 'XREADGROUP', 'EVAL',
             'EVALSHA', 'FCALL'}


def tokens(source):
    """(token, line) of a Lua source, without comments."""
    found = []
    for match in TOKEN.finditer(source):
        text = match.group(0)
        if not text.startswith('--'):
            found.append((text, source.count('\n', 0, match.start()) + 1))
    return found


def _arguments(toks, start):
    """The top-level arguments of the call whose '(' is toks[start]: [[token...]]."""
    args, current, depth = [], [], 0
    for text, _ in toks[start:]:
        if text in '([{':
            depth += 1
            if depth == 1:
                continue
        elif text in ')]}':
            depth -= 1
            if depth == 0:
                break
        elif text == ',' and depth == 1:
            args.append(current)
            current = []
            continue
        current.append(text)
    return args + ([current] if current else [])


def _built(expr):
    """Why the expression `expr` (tokens) is a key built in Lua, or None."""
    if '..' in expr:
        return 'concatenates'
    if any(t[0] in '\'"[' and len(t) > 1 and t != '[' for t in expr):
        return 'is a string'
    if 'ARGV' in expr:
        return 'comes from ARGV'
    return None


def _assignments(toks, name):
    """The right-hand sides ([token...] up to the line's end) assigned to `name` alone."""
    found = []
    for i, (text, line) in enumerate(toks[:-1]):
        if text == name and toks[i + 1][0] == '=' and (i == 0 or toks[i - 1][0] not in ',.'):
            rhs = [t for t, ln in toks[i + 2:] if ln == line]
            found.append(rhs)
    return found


def _key_params(toks):
    """{function name: {parameter positions used as keys}} of the local functions."""
    found, i = {}, 0
    while i < len(toks):
        if toks[i][0] == 'function' and i + 2 < len(toks) and toks[i + 2][0] == '(':
            name = toks[i + 1][0]
            params = [a[0] for a in _arguments(toks, i + 2) if a]
            depth, j = 1, i + 3
            while j < len(toks) and depth:        # the body, to the function's `end`
                t = toks[j][0]
                depth += (t in ('function', 'do', 'if', 'repeat')) - (t in ('end', 'until'))
                j += 1
            body = toks[i:j]
            used = {tuple(key) for key, _ in _key_expressions(body)}
            found[name] = {n for n, p in enumerate(params) if (p,) in used}
            i = j
        else:
            i += 1
    return found


def _key_expressions(toks, key_params=None):
    """([token...] of every key argument, line): of redis.call, and of calls to
    functions whose parameters at those positions are keys."""
    found = []
    for i, (text, line) in enumerate(toks):
        if text == 'redis' and toks[i + 1][0] == '.' and toks[i + 2][0] in ('call', 'pcall'):
            args = _arguments(toks, i + 3)
            command = args[0][0].strip('\'"').upper() if args and args[0] else '?'
            assert command not in MULTI_KEY, f'line {line}: add {command} to KEY_ARGS'
            positions = KEY_ARGS.get(command, (1,))
            if positions == 'all':
                positions = range(1, len(args))
            found += [(args[p], line) for p in positions if p < len(args)]
        elif key_params and text in key_params and toks[i + 1][0] == '(' \
                and toks[i - 1][0] != 'function':
            args = _arguments(toks, i + 1)
            found += [(args[p], line) for p in key_params[text] if p < len(args)]
    return found


def built_keys(source, key_params=None):
    """['line: why'] of every key built inside `source` rather than taken from KEYS."""
    toks = tokens(source)
    problems = []
    for expr, line in _key_expressions(toks, key_params):
        why = _built(expr)
        if why is None and len(expr) == 1 and re.fullmatch(r'[A-Za-z_]\w*', expr[0]):
            why = next(filter(None, map(_built, _assignments(toks, expr[0]))), None)
        if why:
            problems.append(f'{line}: key {" ".join(expr)} {why}')
    for i, (text, line) in enumerate(toks[:-1]):
        if text == 'KEYS' and '..' in (toks[i - 1][0], _after_index(toks, i)):
            problems.append(f'{line}: a KEYS entry is concatenated')
    return problems


def _after_index(toks, i):
    """The token after KEYS[...]."""
    depth = 0
    for text, _ in toks[i + 1:]:
        if depth == 0 and text != '[':
            return text
        depth += (text == '[') - (text == ']')
    return None


def test_the_lua_checker_finds_a_key_built_in_lua():
    """The control: each way of making a key name inside a script is found."""
    source = '''
local prefix = ARGV[1]
redis.call('GET', ARGV[2])                       -- 3: a key in ARGV
redis.call('HGET', KEYS[1] .. ':log', 'f')       -- 4: KEYS concatenated
local k = prefix .. 'm:' .. ARGV[3]
redis.call('DEL', KEYS[2], k)                    -- 6: a local built from ARGV
redis.call('LMOVE', KEYS[1], 'mailq:q:x', 'RIGHT', 'LEFT')   -- 7: a literal
push(KEYS[1], 'mailq:wake:x')                    -- 8: through a function's key parameter
local ok = KEYS[3]
redis.call('HSET', ok, 'a', ARGV[1] .. 'b')      -- 10: fine, only the value is built
redis.call('ZADD', KEYS[1], 1, ARGV[2] .. ':' .. ARGV[3])   -- 11: fine, a member
'''
    found = built_keys(source, {'push': {0, 1}})
    assert [line.split(':')[0] for line in found] == ['3', '4', '6', '7', '8', '4'], found


def test_the_lua_checker_knows_which_parameters_are_keys():
    lib = tokens((SCRIPTS / 'lib.lua').read_text())
    params = _key_params(lib)
    assert params['push_task'] == {0, 1}                   # queue, wake; not task, first
    assert params['take_off'] == {3, 4, 5, 6, 7, 8}        # queue .. held; not status, task, id
    assert params['emit'] == {1}                           # record; the streams are KEYS[i]


def test_no_lua_script_builds_a_key_name():
    key_params = _key_params(tokens((SCRIPTS / 'lib.lua').read_text()))
    problems = []
    for path in sorted(SCRIPTS.glob('*.lua')):
        problems += [f'{path.name}:{p}' for p in built_keys(path.read_text(), key_params)]
    assert problems == []
