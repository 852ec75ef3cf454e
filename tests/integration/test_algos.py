"""algo=dqn, qrdqn, recurrent_ppo and a2c end to end: trained, saved, evaluated, served, resumed; the catalog
oracle in every metrics.json; the bad inputs as one line."""

import json
import shutil

import pytest
from conftest import error_line, run_here, train_here, train_in_process

ALGOS = ("dqn", "qrdqn", "recurrent_ppo", "a2c")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run of each algo (no off-policy check of the estimators: a PPO's), trained in this process; the
    commands below run in this process too (:func:`conftest.run_here`): what is checked is what they answer."""
    base = tmp_path_factory.mktemp("algos")
    for algo in ALGOS:
        train_in_process(base / algo, f"algo={algo}", "eval.ope_log_steps=0")
    return base


@pytest.mark.parametrize("algo", ALGOS)
def test_each_algo_trains_saves_and_is_scored_on_both_scales(runs, algo, capsys):
    folder = runs / algo
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["algo"] == algo and metrics["action"] == "discrete"
    assert metrics["policies"][algo]["policy"] == "candidate_scorer"
    policies = metrics["policies"]
    assert {"oracle", "oracle_catalog", "random"} <= set(policies) and "ppo_sample" not in policies
    lo, hi = policies["random"]["mean_expected_reward"], policies["oracle_catalog"]["mean_expected_reward"]
    learnt = policies[algo]["mean_expected_reward"]
    assert metrics["normalized_score_catalog"] == pytest.approx((learnt - lo) / (hi - lo))
    assert (folder / f"{algo}.zip").is_file()
    assert sorted(p.name for p in (folder / "checkpoints").glob("*.zip")) == [f"{algo}_1024_steps.zip",
                                                                             f"{algo}_512_steps.zip"]
    evaluated = run_here(capsys, "evaluate", f"run_dir={folder}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert f"normalized_score ({algo}): {metrics['normalized_score']:.3f}" in evaluated.stdout  # the same sessions
    served = run_here(capsys, "recommend", f"run_dir={folder}", "track_id=syn00000000", "length=3", "format=json")
    assert served.returncode == 0, served.stderr[-2000:]
    steps = json.loads(served.stdout)["steps"]
    assert len(steps) == 3 and all(0 <= s["pick"] < 4 for s in steps)


def test_a_resumed_dqn_continues_from_its_checkpoint(runs, tmp_path):
    folder = tmp_path / "resumed"
    shutil.copytree(runs / "dqn", folder)
    (folder / "checkpoints" / "dqn_1024_steps.zip").unlink()
    train_in_process(folder, "algo=dqn", "eval.ope_log_steps=0", "resume=true", "dqn.total_timesteps=1536")
    assert "resuming from dqn_512_steps.zip at 512 timesteps" in (folder / "train.log").read_text()
    assert json.loads((folder / "run_info.json").read_text())["dqn_timesteps"] == 1536


def test_a_fine_tuned_recurrent_ppo_is_the_next_version(runs, tmp_path, capsys):
    folder = tmp_path / "tuned"
    shutil.copytree(runs / "recurrent_ppo", folder)
    proc = run_here(capsys, "finetune", f"run_dir={folder}", f"feedback={folder / 'feedback.csv'}", "timesteps=256")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (folder / "recurrent_ppo-v2.zip").is_file()


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    line = error_line(train_here(capsys, tmp_path / "latent", "algo=dqn", "env.action=latent"))
    assert line.startswith("error: algo='dqn': DQN and QR-DQN score the k candidates: they need env.action=discrete")
    assert not (tmp_path / "latent" / "metrics.json").exists()
    foreign = tmp_path / "foreign"
    shutil.copytree(runs / "a2c", foreign)
    shutil.copy(runs / "dqn" / "dqn.zip", foreign / "a2c.zip")
    for args in (("evaluate", f"run_dir={foreign}"), ("recommend", f"run_dir={foreign}", "track_id=syn00000000"),
                 ("finetune", f"run_dir={foreign}", f"feedback={foreign / 'feedback.csv'}", "timesteps=64")):
        assert error_line(run_here(capsys, *args)) == (
            f"error: {foreign / 'a2c.zip'}: a model of algo=dqn, but the run's algo is a2c "
            "(a model file of another run?)")
    assert error_line(run_here(capsys, "recommend", f"run_dir={runs / 'dqn'}", "track_id=syn00000000", "sample=true")
                      ).startswith("error: sample=true:")
