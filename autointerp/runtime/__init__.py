"""Runtime machinery of a batch: bounded concurrency, database threads, gc tuning, interrupts, progress, run records."""
