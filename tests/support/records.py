"""Reading mail records straight from Redis, as the tests check them."""
from mailq.store.body import unpack


def stored_message(client, mail_id, prefix='mailq'):
    """The message of a mail as the store keeps it (body key, expanded), or None."""
    return unpack(client.get(f'{prefix}:m:{mail_id}:body'))


def record_ids(client, prefix='mailq'):
    """The ids of the mail records in a Redis, sorted (not their :log or :body keys)."""
    return sorted(k.decode().split(':')[2] for k in client.scan_iter(f'{prefix}:m:*')
                  if k.count(b':') == 2)
