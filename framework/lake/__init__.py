"""Delta Lake and Spark: tables, the session, sources, tagged commits, the write
strategies, the quarantine and the local commit lock."""
