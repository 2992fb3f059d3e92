"""Delta Lake, Spark and storage: tables, listing any location, the session, sources,
tagged commits, the write strategies, the quarantine, the local commit lock and the
S3 log store's check (its Java in ``jvm/``)."""
