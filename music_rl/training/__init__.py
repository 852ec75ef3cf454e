"""The training run: the pipeline from catalog to ``metrics.json`` (:mod:`~music_rl.training.pipeline`), one module
per stage: the world (:mod:`~music_rl.training.run_world`), the learning (:mod:`~music_rl.training.learn`), the
scores (:mod:`~music_rl.training.scoring`) and the final TensorBoard entries (:mod:`~music_rl.training.results_log`);
its callbacks and its TensorBoard writer."""
