"""Binary reads on Django's PostgreSQL connection, and the priming that keeps their backend's memory."""
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection

# Bytes a PostgreSQL session allocates and frees once before its first chunk read (see
# backend_heap_primed): below the 32 MiB that glibc's dynamic mmap threshold goes up to, and above
# a chunk read's largest block (string_agg doubles its buffer: 8 MiB for a 20,000-row chunk of 64
# float32 features, 16 MiB up to 128 features).
BACKEND_HEAP_PRIME_BYTES = 30_000_000
_backends_primed: weakref.WeakSet = weakref.WeakSet()


@contextmanager
def binary_cursor() -> Iterator[psycopg.Cursor]:
    """Yield a psycopg cursor on Django's connection (and so its transaction) that can ask for binary results.

    Django's client-side cursors cannot return binary results; bytea then arrives as it is,
    without hex decoding, about five times faster for features.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor


def backend_heap_primed(cursor: psycopg.Cursor) -> None:
    """Once per database session: make its PostgreSQL backend keep the megabytes a chunk read frees.

    A chunk read makes the backend build byte strings of megabytes and free them at the end of
    the statement. glibc's malloc (on the database server) maps blocks above a threshold afresh
    and unmaps them when freed, and gives heap memory back to the kernel above a second
    threshold; it raises both only when it frees a mapped block larger than the first. A session
    whose history never did that faults every chunk's memory in again page by page: measured
    with two scoring workers, one of the two backends took about 4,000 page faults and 10 ms of
    kernel time per chunk, and read its chunks 1.5 times slower than the other. Allocating and
    freeing one block larger than a chunk's largest (and no larger than the 32 MiB the dynamic
    threshold goes up to) raises both thresholds for the rest of the session; blocks above that
    (chunks of very wide rows: LABELHUB_SCORING_CHUNK makes them smaller) are mapped afresh
    whatever is done. On a server with another allocator the statement costs one allocation and
    changes nothing.
    """
    if cursor.connection in _backends_primed:
        return
    cursor.execute("SELECT octet_length(repeat(repeat('x', 10000), %s))", [BACKEND_HEAP_PRIME_BYTES // 10_000])
    cursor.fetchone()
    _backends_primed.add(cursor.connection)
