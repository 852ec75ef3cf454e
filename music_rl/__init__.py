"""Layers, imported one way: core < data < envs < learners < evaluation < training < serving < cli; config on top."""
