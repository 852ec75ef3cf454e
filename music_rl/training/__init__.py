"""The training run: the pipeline from catalog to ``metrics.json`` (:mod:`~music_rl.training.pipeline`; its
world stages :mod:`~music_rl.training.run_world`, its final TensorBoard entries
:mod:`~music_rl.training.results_log`), its callbacks and its TensorBoard writer."""
