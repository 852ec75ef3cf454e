"""What learns a policy: SB3 PPO (and SAC, TD3) wiring, the candidate-scoring policy, the vectorised sessions and
the model files."""
