"""Item import: one reader per file format, the import service in short transactions, its reads, page and REST API."""
