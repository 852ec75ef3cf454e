"""What runs report: a run's results in Markdown (:mod:`~music_rl.reports.report`), a sweep's jobs aggregated
(:mod:`~music_rl.reports.sweep`, its intervals :mod:`~music_rl.reports.aggregate`, its off-policy accuracy
:mod:`~music_rl.reports.ope_accuracy`), the overrides a job was run with (:mod:`~music_rl.reports.overrides`),
and the generated result tables of the documents (:mod:`music_rl.reports.tables`); every Markdown table through
:mod:`~music_rl.reports.markdown`."""
