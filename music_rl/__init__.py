"""Layers, imported one way: core < data < envs < learners < runs < evaluation < user_model < sim2real < config <
training < serving < cli (runs reads the model file names of learners; config composes the groups of the layers
below it)."""
