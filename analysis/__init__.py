"""Analysis: run records (the source of truth), W&B mirroring, tables and plots."""
