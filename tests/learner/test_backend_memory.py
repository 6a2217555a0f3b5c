"""A scoring session's PostgreSQL backend keeps the megabytes a chunk read frees (selectors.binary.backend_heap_primed).

Without it, a backend's malloc may unmap or trim those megabytes at the end of every statement
and fault them in again, page by page, on the next: two scoring workers then read chunks at
unequal speeds. The page faults are read from /proc, so the database server must run on this
machine (as it does in `make test` and CI).
"""
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from learner.selectors.binary import backend_heap_primed

pytestmark = [
    pytest.mark.postgres,  # a PostgreSQL backend's memory
    pytest.mark.django_db,  # connects to the test database, set up by then
]

# Shaped like a chunk read: a byte string of 20,000 rows of 256 bytes (5 MB) built by the server
# and freed at the end of the statement.
CHUNK_LIKE = "SELECT string_agg(decode(repeat('ab', 256), 'hex'), ''::bytea) FROM generate_series(1, 20000)"
READS = 4


def _minor_faults(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[7])


def _faults_per_read(*, primed: bool) -> int:
    """Page faults of a new session's backend per chunk-like read, after its first read."""
    with psycopg.connect(**connection.get_connection_params()) as conn, conn.cursor() as cursor:
        pid = conn.info.backend_pid
        if not Path(f"/proc/{pid}/stat").exists():
            pytest.skip("the database server does not run on this machine")
        if primed:
            backend_heap_primed(cursor)
        cursor.execute(CHUNK_LIKE)
        assert len(cursor.fetchone()[0]) == 20_000 * 256
        before = _minor_faults(pid)
        for _ in range(READS):
            cursor.execute(CHUNK_LIKE)
            cursor.fetchone()
        return (_minor_faults(pid) - before) // READS


def test_a_primed_session_reads_chunks_without_faulting_their_memory_in_again():
    unprimed = _faults_per_read(primed=False)
    if unprimed < 500:
        pytest.skip(f"this server's allocator keeps a read's memory by itself ({unprimed} faults per read)")
    assert _faults_per_read(primed=True) < unprimed / 10
