"""Rewards from feedback and their propagation to every track (K-Means + decay).

(Stub: the reward config; the implementation follows docs/ARCHITECTURE.md.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RewardConfig:
    """Reward definition and propagation settings (config group ``reward``)."""

    like_weight: float = 10.0
    early_skip_penalty: float = 0.0
    early_skip_threshold: float = 0.1
    decay: str = "exponential"
    decay_scale: float = 1.0
    n_clusters: int = 20
    probes_per_cluster: int = 4
    probe_selection: str = "nearest"
    prior: str = "global_mean"
