"""env.action=latent (issue #16): the action is a point of the latent space, the env plays the unplayed track nearest
to it. The env checkers, the nearest-unplayed query, baselines that play the same env, the config rules, and tiny
PPO, SAC and TD3 runs end to end (train, metrics, evaluate, recommend, finetune)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, train_here, train_in_process

from envs.candidates import CandidateIndex, build_neighbour_table
from envs.music_env import EnvConfig, MusicRecEnv
from envs.world import synthetic_world
from music_rl.evaluation.baselines import baseline_policies
from music_rl.evaluation.evaluate import evaluate_policies
from music_rl.learners.models import load_model, model_versions


@pytest.fixture(scope="module")
def world():
    return synthetic_world(n_tracks=600, latent_dim=4, seed=3, n_clusters=6, population=6)


def latent_env(world, **cfg) -> MusicRecEnv:
    return MusicRecEnv(world, EnvConfig(action="latent", **cfg))


@pytest.mark.parametrize("observation", ["seed", "candidates", "history"])
def test_both_env_checkers_pass_in_latent_mode(world, observation):
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = latent_env(world, observation=observation, reward_source="simulator")
    assert env.action_space.shape == (4,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither checker may even warn
        gym_check(env, skip_render_check=True)
        sb3_check(env, warn=True)


def test_nearest_unplayed_respects_the_played_mask_and_widens_when_the_nearest_are_played():
    rng = np.random.default_rng(0)
    Z = rng.random((500, 3))
    index = CandidateIndex(Z, build_neighbour_table(Z, 8), k=4)
    point = np.array([0.5, 0.5, 0.5])
    order = np.argsort(np.linalg.norm(Z - point, axis=1), kind="stable")
    played = np.zeros(500, dtype=bool)
    assert index.nearest_unplayed(point, played)[0] == order[0]
    for n_played in (1, 31, 32, 255, 256, 499):  # across the widening query: 32, 256, then the exact search
        played[:] = False
        played[order[:n_played]] = True
        track, distance = index.nearest_unplayed(point, played)
        assert track == order[n_played] and distance == pytest.approx(np.linalg.norm(Z[track] - point))
    played[:] = True
    with pytest.raises(ValueError, match="every track is played"):
        index.nearest_unplayed(point, played)


def test_nearest_unplayed_breaks_ties_by_the_lower_index():
    Z = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [5.0, 5.0]] * 4)  # four copies of each point
    index = CandidateIndex(Z, build_neighbour_table(Z, 4), k=2)
    played = np.zeros(len(Z), dtype=bool)
    assert index.nearest_unplayed(np.array([0.0, 0.0]), played) == (0, 0.0)
    played[[0, 5]] = True
    assert index.nearest_unplayed(np.array([0.0, 0.0]), played)[0] == 10
    assert index.nearest_unplayed(np.array([0.5, 0.0]), played)[0] == 1  # tracks 0 (played) and 1 tie


def test_a_latent_action_plays_the_nearest_unplayed_track_and_says_where_it_was(world):
    env = latent_env(world, no_repeat=2)  # propagated rewards: the session never ends early
    env.reset(seed=1)
    for i in range(8):
        cand = int(env.current_candidates[i % 4])
        _, _, _, _, info = env.step(env.candidate_action(i % 4))
        assert info["track"] == cand and not info["outside_candidates"] and info["distance"] < 1e-6
    env.reset(seed=2)
    corner = np.ones(4, dtype=np.float32)  # the point (1, 1, 1, 1) of [0, 1]^4
    distance = np.linalg.norm(world.latents.astype(np.float64) - 1.0, axis=1)
    distance[env.excluded_tracks()] = np.inf
    obs, _, _, _, info = env.step(corner)
    assert info["track"] == int(np.argmin(distance)) and info["distance"] == pytest.approx(distance.min())
    assert np.array_equal(info["proposed"], np.ones(4)) and np.array_equal(obs[:4], world.latents[info["track"]])
    assert info["outside_candidates"] == (info["track"] not in info["candidates"])
    _, _, _, _, again = env.step(np.full(4, 7.0))  # clipped to the box: the next nearest, the first is played
    assert again["track"] != info["track"] and np.array_equal(again["proposed"], np.ones(4))


def test_baselines_play_the_same_sessions_in_either_action_space(world):
    """A baseline chooses among the candidates; in latent mode it plays the candidate through its latent: every
    figure of every baseline equals its figure in discrete mode, on the same sessions."""
    results = {action: evaluate_policies(world, EnvConfig(action=action), baseline_policies(7), "personal", 6, 11)
               for action in ("discrete", "latent")}
    for name in ("random", "nearest", "greedy", "oracle"):
        latent = results["latent"]["policies"][name]
        assert latent["outside_candidates_rate"] == 0.0 and latent["mean_distance"] < 1e-6
        discrete = results["discrete"]["policies"][name]
        assert {k: v for k, v in latent.items() if k in discrete} == discrete


@pytest.mark.slow
def test_an_offpolicy_algo_with_a_discrete_action_is_one_error_line(tmp_path, capsys):
    proc = train_here(capsys, tmp_path / "run", "algo=sac")  # env.action=discrete, the default
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [proc.stderr.strip().splitlines()[-1]] and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "algo='sac': SAC and TD3 act in a continuous space: they need env.action=latent" in errors[0]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module", params=["ppo", "sac", "td3"])
def latent_run(request, tmp_path_factory) -> tuple[str, Path]:
    """One tiny latent run per algorithm (module-wide; tests that write into it take a copy), trained in this
    process: what is checked is the run it leaves, not the process."""
    algo = request.param
    out = tmp_path_factory.mktemp(f"latent-{algo}") / "run"
    train_in_process(out, "env.action=latent", f"algo={algo}", "env.reward_source=simulator")
    return algo, out


@pytest.mark.slow
def test_a_latent_run_writes_its_model_and_reports_the_learnt_policy(latent_run):
    algo, run = latent_run
    assert (run / f"{algo}.zip").is_file() and (run / "ppo.zip").is_file() == (algo == "ppo")
    assert list((run / "checkpoints").glob(f"{algo}_*_steps.zip"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["algo"] == algo and metrics["action"] == "latent"
    assert set(metrics["policies"]) == {algo, "random", "nearest", "greedy", "oracle", "oracle_catalog", "planner"}
    learnt = metrics["policies"][algo]
    assert 0.0 <= learnt["outside_candidates_rate"] <= 1.0 and learnt["mean_distance"] >= 0.0
    assert metrics["normalized_score"] == pytest.approx(
        (learnt["mean_expected_reward"] - metrics["policies"]["random"]["mean_expected_reward"])
        / (metrics["policies"]["oracle"]["mean_expected_reward"]
           - metrics["policies"]["random"]["mean_expected_reward"]))
    assert "ope" not in metrics and "latent action" in metrics["ope_reason"]
    assert not (run / "exploration.csv").exists()


@pytest.mark.slow
def test_a_latent_run_is_evaluated_again_the_same(latent_run, tmp_path, capsys):
    algo, run = latent_run
    out = tmp_path / "again.json"
    assert run_cli("evaluate", f"run_dir={run}", f"out={out}") == 0
    assert f"normalized_score ({algo})" in capsys.readouterr().out
    again, first = json.loads(out.read_text()), json.loads((run / "metrics.json").read_text())
    assert again["policies"] == first["policies"] and again["normalized_score"] == first["normalized_score"]
    assert run_cli("evaluate", f"run_dir={run}", f"log={run / 'feedback.csv'}") == 2  # no OPE for a latent run
    assert "a latent action has none" in capsys.readouterr().err


@pytest.mark.slow
def test_recommend_shows_the_point_the_track_played_and_its_distance(latent_run, capsys):
    algo, run = latent_run
    argv = (f"run_dir={run}", "track_id=syn00000007", "length=6")
    assert run_cli("recommend", *argv, "format=json") == 0
    steps = json.loads(capsys.readouterr().out)["steps"]
    assert len(steps) == 6 and steps[0]["from"]["track_id"] == "syn00000007"
    played = [s["played"]["track_id"] for s in steps]
    assert len(set(played)) == 6 and "syn00000007" not in played
    for prev, step in zip(played, steps[1:], strict=False):
        assert step["from"]["track_id"] == prev
    for step in steps:
        assert len(step["proposed"]) == 5 and all(0.0 <= v <= 1.0 for v in step["proposed"])
        assert step["outside_candidates"] == (step["played"] not in step["candidates"]) and step["distance"] >= 0
    assert run_cli("recommend", *argv) == 0
    table = capsys.readouterr().out
    assert table.count("point (") == 6 and table.count("  -> ") == 6 and "distance" in table
    for step in steps:
        assert f"[{step['played']['track_id']}]   distance {step['distance']:.4f}" in table


@pytest.mark.slow
def test_a_model_of_the_other_action_space_is_one_line_for_every_command(latent_run, pristine, tmp_path, capsys):
    algo, latent = latent_run
    if algo != "ppo":
        pytest.skip("one algorithm suffices: the check is the load's, whatever the algorithm")
    for source, target in ((pristine, latent), (latent, pristine)):  # a discrete model in a latent run, and back
        run = Path(shutil.copytree(target, tmp_path / f"into-{target.parent.name}"))
        shutil.copy(source / "ppo.zip", run / "ppo.zip")
        (tmp_path / "new.csv").write_text("user_id,session_id,position,track_id,percentage_listened,liked\n"
                                          "me,s,1,syn00000001,1.0,1\n")
        for command, args in (("recommend", ["track_id=syn00000007", "length=2"]),
                              ("finetune", [f"feedback={tmp_path / 'new.csv'}", "timesteps=64"]),
                              ("evaluate", ["n_episodes=2"])):
            assert run_cli(command, f"run_dir={run}", *args) == 2, command
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert "ppo.zip: reads observations" in err and "a model of another run?" in err, (command, err)
        assert model_versions(run, "ppo") == [1]


@pytest.mark.slow
def test_finetune_continues_the_runs_algorithm_into_a_new_version(latent_run, tmp_path, capsys):
    algo, pristine = latent_run
    run = Path(shutil.copytree(pristine, tmp_path / "run"))
    trained = load_model(run / f"{algo}.zip", algo=algo).num_timesteps
    new = pd.DataFrame({"user_id": ["me"] * 3, "session_id": ["s"] * 3, "position": [1, 2, 3],
                        "track_id": ["syn00000001", "syn00000002", "syn00000003"],
                        "percentage_listened": [1.0, 0.2, 0.9], "liked": [1, 0, 1]})
    new.to_csv(tmp_path / "new.csv", index=False)
    assert run_cli("finetune", f"run_dir={run}", f"feedback={tmp_path / 'new.csv'}", "timesteps=512") == 0
    assert f"{algo}-v2.zip (version 2)" in capsys.readouterr().out
    assert model_versions(run, algo) == [1, 2]
    assert load_model(run / f"{algo}-v2.zip", algo=algo).num_timesteps == trained + 512
    assert run_cli("recommend", f"run_dir={run}", "track_id=syn00000007", "length=3", "format=json") == 0
    assert json.loads(capsys.readouterr().out)["policy_version"] == 2
    assert run_cli("simulate", f"run_dir={run}", "rounds=1") == 2  # the online loop is the discrete runs'
    assert "env.action=latent" in capsys.readouterr().err


@pytest.mark.slow
def test_an_offpolicy_run_resumes_from_its_checkpoint_with_an_empty_buffer(latent_run, tmp_path):
    algo, pristine = latent_run
    run = Path(shutil.copytree(pristine, tmp_path / "run"))
    (run / "metrics.json").unlink()  # as if it had been stopped after its last checkpoint
    said = train_in_process(run, "env.action=latent", f"algo={algo}", "env.reward_source=simulator", "resume=true",
                            f"{algo}.total_timesteps=2048")
    assert f"resuming from {algo}_1024_steps.zip" in said
    assert load_model(run / f"{algo}.zip", algo=algo).num_timesteps == 2048
    assert json.loads((run / "metrics.json").read_text())["algo"] == algo
