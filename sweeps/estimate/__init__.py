"""What a spec will cost before it runs: FLOPs and GPU-hours (cost), CPU time (cpu_time), and
the memory, corpus and resource checks before Ray starts (preflight)."""
