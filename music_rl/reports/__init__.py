"""What runs report: a run's results in Markdown, a sweep's jobs aggregated, and the generated result tables of
the documents (:mod:`music_rl.reports.tables`)."""
