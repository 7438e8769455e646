"""User code for cron jobs: the `[mailq] imports` modules and `callable = module:function`.

Modules are found on sys.path, to which the config file's directory is added
(at the end, so it never shadows an installed package).
"""
import importlib
import inspect
import re
import sys
from pathlib import Path

SPEC = re.compile(r'^[A-Za-z_][\w.]*:[A-Za-z_]\w*$')


def _search_path(config):
    folder = str(Path(config.source).resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)


def import_modules(config):
    """Import every `[mailq] imports` module. Raises ImportError naming the module."""
    _search_path(config)
    for name in config.mailq.imports:
        _import(name)


def _import(name):
    try:
        return importlib.import_module(name)
    except Exception as exc:   # a module's own errors are import errors to the user
        raise ImportError(f'cannot import {name!r}: {type(exc).__name__}: {exc}') from None


def resolve(spec, config):
    """The function named by `package.module:function`. Raises ImportError or TypeError."""
    if not SPEC.match(spec):
        raise TypeError(f'{spec!r} must look like package.module:function')
    _search_path(config)
    module_name, _, attr = spec.partition(':')
    module = _import(module_name)
    func = getattr(module, attr, None)
    if func is None:
        raise ImportError(f'module {module_name!r} has no {attr!r}')
    if not callable(func):
        raise TypeError(f'{spec} is not callable')
    try:
        inspect.signature(func).bind(None)
    except TypeError:
        raise TypeError(f'{spec} must take one argument: the fire time (a datetime)') from None
    except ValueError:
        pass   # no signature to inspect (a builtin): trust it
    return func
