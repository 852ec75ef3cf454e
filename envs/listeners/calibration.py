"""How a parametric population answers on a catalog: the figures its defaults are calibrated on (module
docstring of :mod:`envs.listeners.parametric`)."""

from __future__ import annotations

import numpy as np

from envs.listeners.config import ListenerConfig
from envs.listeners.parametric import ParametricPopulation
from envs.listeners.response import expected_reward, response_moments


def calibration_report(X: np.ndarray, cfg: ListenerConfig, rng: np.random.Generator,
                       like_weight: float = 10.0, n_queries: int = 200, k: int = 4) -> dict[str, float]:
    """How a population answers on a catalog: the figures the listener defaults are calibrated on.

    Draws a population (``cfg.population`` listeners) and ``n_queries`` random tracks per listener, in the
    fresh-session state. The candidates of a query track are its ``k`` nearest other tracks on a PCA(5)
    of ``X`` with each component rescaled to [0, 1] (as the env's PCA latents).

    Returns:
        Over random listener-track pairs: ``like_rate`` (mean P(liked)), ``mean_pct``, ``early_skip_rate``
        (P(pct < 0.1)), ``mean_affinity``, ``mean_reward``. Over queries: ``random_reward`` (a random
        candidate's expected reward), ``oracle_reward`` (the best candidate's) and ``oracle_ratio``.
    """
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    pop = ParametricPopulation.sample(X, cfg, rng)
    X = np.asarray(X, dtype=np.float64)
    z = PCA(n_components=min(5, X.shape[1]), svd_solver="full").fit_transform(X)
    z = (z - z.min(axis=0)) / np.maximum(z.max(axis=0) - z.min(axis=0), 1e-12)
    queries = rng.integers(X.shape[0], size=(pop.n, n_queries))
    _, nn = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z[queries.ravel()])
    cands = np.array([row[row != q][:k] for row, q in zip(nn, queries.ravel(), strict=True)])
    cands = cands.reshape(pop.n, n_queries, k)
    a_pairs = np.stack([pop.affinity_matrix(np.array([i]), queries[i])[0] for i in range(pop.n)])
    a_cands = np.stack([pop.affinity_matrix(np.array([i]), cands[i].ravel())[0] for i in range(pop.n)])
    a_cands = a_cands.reshape(cands.shape)
    e_pct, p_like, p_low = response_moments(a_pairs, cfg)
    r_cands = expected_reward(a_cands, cfg, like_weight)
    random_reward, oracle_reward = float(r_cands.mean()), float(r_cands.max(axis=2).mean())
    return {
        "like_rate": float(p_like.mean()), "mean_pct": float(e_pct.mean()),
        "early_skip_rate": float(p_low.mean()), "mean_affinity": float(a_pairs.mean()),
        "mean_reward": float(expected_reward(a_pairs, cfg, like_weight).mean()),
        "random_reward": random_reward, "oracle_reward": oracle_reward,
        "oracle_ratio": oracle_reward / random_reward,
    }
