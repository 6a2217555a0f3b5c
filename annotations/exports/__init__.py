"""Export of a project's labels: rows read in one snapshot, formatted in Python or written by PostgreSQL."""
