"""The training run: the pipeline from catalog to ``metrics.json``, its callbacks and its TensorBoard writer."""
