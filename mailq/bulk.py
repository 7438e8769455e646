"""Bulk enqueue from a CSV file: one mail per row, through service.send (the API's path).

The columns of a row are the template context; its `to` (or `email`) column is
the recipient. Every row carries an idempotency key, so running the same file
again enqueues only rows that were not accepted before (for as long as
`[limits] idempotency_ttl` remembers keys). The key is derived from the template
and the whole row, or, with `key_column`, from the template and that column
alone (then a corrected row is still the same mail, and is not sent twice).
"""
import csv
import hashlib
import json
import sys
from dataclasses import dataclass, field

from tqdm import tqdm

from . import service
from .errors import ValidationError

RECIPIENT_COLUMNS = ('to', 'email')


@dataclass
class Summary:
    accepted: int = 0
    duplicates: int = 0
    rejected: list = field(default_factory=list)     # (line number, reason)

    def lines(self):
        yield (f'accepted {self.accepted}, already enqueued {self.duplicates}, '
               f'rejected {len(self.rejected)}')
        for line, reason in self.rejected:
            yield f'  line {line}: {reason}'


def row_key(template, row, key_column=None):
    """A stable idempotency key for one row (at most 200 characters, as compose wants)."""
    if key_column:
        material = ['column', template, key_column, row[key_column]]
    else:
        material = ['row', template, sorted(row.items())]
    return 'csv:' + hashlib.sha256(json.dumps(material).encode()).hexdigest()


def read_rows(path):
    """(header, [(line number, row dict)]) of a UTF-8 CSV file (a BOM is fine)."""
    try:
        with open(path, newline='', encoding='utf-8-sig') as fh:
            reader = csv.DictReader(fh)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValidationError('csv', f'cannot read {path}: {exc}') from None
    return header, rows


def recipient_column(header):
    found = [name for name in header if name.lower() in RECIPIENT_COLUMNS]
    if not found:
        raise ValidationError('csv', 'needs a "to" or "email" column for the recipient')
    return found[0]


def enqueue_csv(rt, path, template, *, key_column=None, queue=None, send_at=None,
                context=None, sender=None, progress=True):
    """Enqueue one mail per row; returns a Summary. Redis loss raises Unavailable:
    the rows before it are in, and a re-run picks up the rest."""
    if not rt.templates.exists(template):
        raise ValidationError('template', f'unknown template {template!r}')
    header, rows = read_rows(path)
    to_column = recipient_column(header)
    if key_column and key_column not in header:
        raise ValidationError('key_column', f'no column {key_column!r} in {path}')
    common = {name: value for name, value in
              (('queue', queue), ('send_at', send_at), ('from', sender)) if value}
    summary = Summary()
    bar = tqdm(rows, total=len(rows), unit='row', file=sys.stderr,
               disable=None if progress else True)   # None: only on a terminal
    for line, row in bar:
        data, reason = _mail_for_row(row, to_column, template, context)
        if reason:
            summary.rejected.append((line, reason))
            continue
        data.update(common)
        try:
            result = service.send(rt, data, idempotency_key=row_key(template, row, key_column),
                                  check_request=False)   # a corrected row is the same mail
        except ValidationError as exc:
            summary.rejected.append((line, str(exc)))
            continue
        if result.get('duplicate'):
            summary.duplicates += 1
        else:
            summary.accepted += 1
    return summary


def _mail_for_row(row, to_column, template, context):
    """(mail request, None) or (None, why the row is rejected)."""
    if None in row:
        return None, 'more fields than the header has columns'
    if any(value is None for value in row.values()):
        return None, 'fewer fields than the header has columns'
    to = row[to_column].strip()
    if not to:
        return None, f'{to_column}: is empty'
    return {'to': to, 'template': template, 'context': {**(context or {}), **row}}, None
