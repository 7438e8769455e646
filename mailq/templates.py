"""Mail templates: Jinja2 files rendered once, when a mail is accepted.

A template NAME is up to three files in `[templates] path`: NAME.subject,
NAME.txt and NAME.html. HTML is autoescaped, text and subject are not. With
no path, the templates shipped with mailq are used (templates/mail of the
source tree, which the wheel and dist/mailq.pyz carry inside). Rendering
runs in Jinja2's sandbox with a time budget, because the context comes from
the request.
"""
import contextvars
import sys
import time
from importlib import resources
from pathlib import Path

from jinja2 import (ChainableUndefined, FileSystemLoader, FunctionLoader, StrictUndefined,
                    TemplateError, TemplateNotFound)
from jinja2.sandbox import SandboxedEnvironment, SecurityError

PARTS = ('subject', 'txt', 'html')
MAX_PRODUCT = 1_000_000       # items of a string or list made by `*` in a template


class RenderError(Exception):
    """The template could not be rendered: the message says why."""


class RenderTimeout(RenderError):
    """Out of time: depends on the data and the machine's load, not only the template."""


class Deadline:
    """A render budget, checked by `range()` inside templates (loops are where time goes)."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def check(self):
        if time.monotonic() > self.end:
            raise RenderTimeout('render took too long')

    def trace(self, frame, event, arg):
        """A sys.settrace hook: loops over request data have no range() to count them."""
        self.check()
        return self.trace


class Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox with `*` and `**` capped: 'x' * n is one C call no clock can stop."""
    intercepted_binops = frozenset(['*', '**'])

    def call_binop(self, context, operator, left, right):
        if operator == '**' and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right > 4096:
            raise SecurityError('exponent too large in template')
        if operator == '*':
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > MAX_PRODUCT:
                    raise SecurityError('result of * too large in template')
        return super().call_binop(context, operator, left, right)


_used_undefined = contextvars.ContextVar('mailq_used_undefined', default=None)


class NotedUndefined(ChainableUndefined):
    """Lenient like ChainableUndefined, and notes that a check render used a variable it
    could not supply: an error after that may not happen with the caller's context."""
    __slots__ = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        noted = _used_undefined.get()
        if noted is not None:
            noted.append(self._undefined_name)


def builtin_templates(kind):
    """The shipped templates of one kind ('mail', 'dashboard'): a directory in a
    checkout or a wheel, a zip member inside mailq.pyz."""
    return resources.files('mailq').joinpath('_templates', kind)


def template_loader(root):
    """A Jinja2 loader for a directory on disk or inside a zip."""
    if isinstance(root, Path):
        return FileSystemLoader(str(root))
    return FunctionLoader(lambda name: root.joinpath(name).read_text(encoding='utf-8')
                          if root.joinpath(name).is_file() else None)


class MailTemplates:
    def __init__(self, path, render_timeout=2.0):
        self.path = Path(path) if path else builtin_templates('mail')
        self.render_timeout = render_timeout
        self.env = self._environment(StrictUndefined)
        # `check` renders without the caller's variables; it gets its own environment
        # so a health check never loosens a render running in another thread.
        self.lenient_env = self._environment(NotedUndefined)

    def _environment(self, undefined):
        return Sandbox(loader=template_loader(self.path),
                       autoescape=lambda name: bool(name) and name.endswith('.html'),
                       undefined=undefined, keep_trailing_newline=False, auto_reload=False)

    def names(self):
        """Every template name that has at least a subject or a body file."""
        if not self.path.is_dir():
            return []
        return sorted({p.name.rsplit('.', 1)[0] for p in self.path.iterdir()
                       if p.is_file() and p.name.rsplit('.', 1)[-1] in PARTS})

    def exists(self, name):
        """Templates are loaded once (no auto-reload), so their names are listed once too."""
        if self._names is None:
            self._names = frozenset(self.names())
        return name in self._names

    _names = None

    def check(self, name):
        """(errors, warnings) of one template, rendered without the caller's context.

        Errors are certain to hit every mail: a part that does not load or parse, no
        subject or no body, a render that fails without using any variable. A render
        that fails after using a variable only the caller gives (`{{ n + 1 }}`) is a
        warning, as is running out of time: a real render may well succeed."""
        errors, warnings = self._missing_parts(name), []
        for part in PARTS:
            problem = self._check_part(name, part)
            if problem:
                (errors if problem[1] else warnings).append(problem[0])
        return errors, warnings

    def _missing_parts(self, name):
        """compose() refuses a mail without a subject or without text or HTML."""
        missing = [f'{name}: no {name}.subject'] if not self._has_part(name, 'subject') else []
        if not self._has_part(name, 'txt') and not self._has_part(name, 'html'):
            missing.append(f'{name}: no {name}.txt or {name}.html')
        return missing

    def _has_part(self, name, part):
        return self.path.joinpath(f'{name}.{part}').is_file()

    def _check_part(self, name, part):
        """None if the part renders leniently (or is absent), else (message, certain)."""
        used_undefined = []
        token = _used_undefined.set(used_undefined)
        try:
            self._within_budget({}, lambda context: self._render_part(
                self.lenient_env, name, part, context))
        except RenderTimeout as exc:
            return f'{name}.{part}: {exc}', False
        except RenderError as exc:
            return str(exc), not used_undefined
        except Exception as exc:   # report, do not crash the check
            return f'{name}.{part}: {type(exc).__name__}: {exc}', not used_undefined
        finally:
            _used_undefined.reset(token)
        return None

    def render(self, name, context):
        """Returns (subject, text, html); a missing part is None."""
        parts = self._within_budget(context, lambda context: {
            part: self._render_part(self.env, name, part, context) for part in PARTS})
        subject = parts['subject'].strip() if parts['subject'] is not None else None
        return subject, parts['txt'], parts['html']

    def _within_budget(self, context, render):
        """render(context) under the time limit: the context gets a range() that counts,
        and a trace checks the clock (set and reset here, a frame the trace never sees)."""
        deadline = Deadline(self.render_timeout)
        previous = sys.gettrace()
        sys.settrace(deadline.trace)
        try:
            return render(dict(context, range=lambda *a: _budgeted_range(deadline, *a)))
        finally:
            sys.settrace(previous)

    def _render_part(self, env, name, part, context):
        try:
            template = env.get_template(f'{name}.{part}')
        except TemplateNotFound:
            return None
        except TemplateError as exc:
            raise RenderError(f'{name}.{part}: {exc}') from None
        try:
            return template.render(context)
        except RenderError:
            raise
        except (TemplateError, RecursionError, TypeError, ValueError, ArithmeticError,
                AttributeError, KeyError, IndexError, MemoryError) as exc:
            raise RenderError(f'{name}.{part}: {type(exc).__name__}: {exc}') from None


def _budgeted_range(deadline, *args):
    if len(range(*args)) > 100_000:
        raise RenderError('range() too large in template')
    for i in range(*args):
        if i % 256 == 0:
            deadline.check()
        yield i
