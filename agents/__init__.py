"""What runs policies: the training pipeline, SB3 PPO wiring, baselines, evaluation, inference."""
