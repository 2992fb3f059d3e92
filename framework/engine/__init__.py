"""Jobs and how a run goes: the registry, planning, work units, chunks and the runner
(plan, claim, write, complete)."""
