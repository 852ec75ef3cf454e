"""Problem sizes of every measurement of ``music-rl bench``: the benchmarks issue's (:class:`Sizes`), and
:data:`QUICK`, tiny ones that check the benchmark itself in seconds (``quick=true``)."""

from __future__ import annotations

from dataclasses import dataclass, field

SWEEP = (
    "vae.latent_dim=2,4,5",
    "reward.like_weight=10,100",
    "reward.decay=linear,exponential,gaussian",
    "env.reward_source=propagated",
)  # the overrides of `make sweep` (tests/unit/bench/test_bench.py checks)
TINY = "+experiment=tiny"  # conf/experiment/tiny.yaml: the tiny training budget of the tests
OBSERVATIONS = ("seed", "candidates", "history")  # (a), (c): the modes measured (not yet env.observation=listener,
# whose reset draws and propagates a listener's log: docs/results/new-listener.md)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of every measurement (the issue's; :data:`QUICK` shrinks them for the smoke test)."""

    ppo_tracks: int = 20_000  # (a) the default catalog size
    ppo_n_envs: tuple[int, ...] = (1, 8)
    ppo_vec_envs: tuple[str, ...] = ("dummy", "vectorized")  # (a) for every mode and n_envs
    ppo_subproc: tuple[tuple[str, int], ...] = (("candidates", 8),)  # (a) (mode, n_envs) also in subproc
    ppo_many: tuple[tuple[str, int], ...] = (("candidates", 64),)  # (a) (mode, n_envs) also with vectorized
    ppo_rollouts: int = 3  # (a) rollouts + updates timed per measurement
    ppo: dict[str, int] = field(default_factory=dict)  # PPOConfig overrides (none: the defaults)
    step_tracks: tuple[int, ...] = (30_000, 1_000_000)
    step_count: int = 20_000  # (b) steps per timing
    table_tracks: tuple[int, ...] = (30_000, 300_000, 1_000_000)
    table_dims: tuple[int, ...] = (2, 4, 5)
    vae_rows: tuple[int, ...] = (30_000, 1_000_000)
    propagation_tracks: int = 1_000_000
    recommend_tracks: int = 1_000_000
    recommend_requests: int = 5_000  # (f) requests per timing
    prepared_ppo_steps: int = 2_048  # the tiny PPO of the prepared run folder
    train: tuple[str, ...] = ()  # (g) overrides: none, the default job
    world_tracks: int = 1_000_000  # (h)
    scale_tracks: tuple[int, ...] = (100_000, 1_000_000, 10_000_000)  # (m) the scale curve (100M: override it)
    world_train: tuple[str, ...] = (
        "vae.epochs=1",
        "ppo.total_timesteps=2048",
        "eval.eval_freq=0",
        "ppo.progress_bar=false",
    )
    sweep: tuple[str, ...] = SWEEP
    planner_tracks: int = 20_000  # (j) the default catalog size
    planner_grid: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (3, 2), (3, 4), (5, 1), (5, 2), (5, 4), (5, 8),
                                                 (8, 4), (10, 4))  # (horizon, samples)
    planner_listeners: tuple[int, ...] = (100, 101, 102)
    planner_sessions: int = 100
    learnt_tracks: int = 20_000  # (k) the default catalog size
    learnt_population: int = 300  # (k) the sim2real protocol's population
    learnt_sessions: tuple[int, ...] = (10_000,)  # (k) log sizes fitted
    learnt_kinds: tuple[str, ...] = ("sequential", "independent")
    learnt_ppo_rollouts: int = 2  # (k) rollouts + updates per timing
    index_tracks: tuple[int, ...] = (1_000_000, 10_000_000)  # (l) catalog sizes of the exact / faiss / hnsw tables


QUICK = Sizes(
    ppo_tracks=1_000,
    ppo_n_envs=(2,),
    ppo_rollouts=1,
    ppo={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
    ppo_subproc=(),
    ppo_many=(),
    step_tracks=(2_000,),
    step_count=2_000,
    table_tracks=(2_000,),
    table_dims=(2, 5),
    vae_rows=(2_000,),
    propagation_tracks=2_000,
    recommend_tracks=2_000,
    recommend_requests=200,
    prepared_ppo_steps=128,
    train=(TINY,),
    world_tracks=2_000,
    scale_tracks=(2_000, 4_000),
    world_train=(TINY,),
    sweep=("vae.latent_dim=2,5", TINY),
    planner_tracks=2_000,
    planner_grid=((1, 1), (3, 2)),
    planner_listeners=(100,),
    planner_sessions=4,
    learnt_tracks=1_000,
    learnt_population=20,
    learnt_sessions=(200,),
    learnt_kinds=("independent",),
    learnt_ppo_rollouts=1,
    index_tracks=(2_000,),
)
