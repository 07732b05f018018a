"""Getting a report onto disk: the atomic swap under a lock, re-rendering, the multi-report site."""
