"""The partition ledger and its leases: what is complete, failed or running, and who
holds it."""
