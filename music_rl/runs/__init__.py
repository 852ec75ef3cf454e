"""A run folder's infrastructure: its lock and claim, its ``run_info.json``, the seeds derived for its stages."""
