"""A small study run by one process of a multi-process job (or by one process alone), printing
its trial table as one JSON line per scheduler; started by tests/test_distributed.py.

    STUDY_SCHEDULER=hypertrick,pbt python tests/multiprocess_study.py COORDINATOR NUM_PROCESSES PROCESS_ID
    STUDY_SCHEDULER=hypertrick,pbt python tests/multiprocess_study.py single DEVICES

STUDY_PHASES sets the budget in phases per slot; STUDY_STORE=DIR records each scheduler's study in
DIR/<scheduler> (an existing store is resumed); STUDY_SNAPSHOT_SECONDS its snapshot_seconds.
"""

import json
import os
import sys

if sys.argv[1] == "single":
    os.environ["HYPERJAX_HOST_DEVICES"] = sys.argv[2]
else:
    os.environ["HYPERJAX_HOST_DEVICES"] = "1"

import hyperjax as hj  # noqa: E402

if sys.argv[1] != "single":
    hj.distributed.initialize(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), heartbeat_timeout_seconds=10,
                              shutdown_timeout_seconds=10)

import jax  # noqa: E402

from hyperjax.config import tune_arguments  # noqa: E402

budget_phases = int(os.environ.get("STUDY_PHASES", "4"))


def tick(step, metrics):
    print(f"tick {metrics['study/tick']}", flush=True)


# several schedulers (comma-separated) run one after the other in the same processes: one
# start-up and one set of compiles for all of them
for scheduler in os.environ.get("STUDY_SCHEDULER", "hypertrick").split(","):
    config = {
        "agent": {"name": "ppo", "env": "CartPole-v1", "num_envs": 4, "num_steps": 16, "num_minibatches": 1,
                  "num_epochs": 1, "hidden": [16]},
        "space": {"learning_rate": {"type": "Float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
                  "gamma": {"type": "Choice", "choices": [0.9, 0.99, 0.999], "ordered": True}},
        "scheduler": {"name": scheduler},
        "budget": 6 * 4 * 256 * budget_phases, "phase_steps": 256, "trial_steps": 1024, "slots": 6,
        "eval_episodes": 2, "seed": 3,
    }
    agent, space, kwargs = tune_arguments(config)
    if os.environ.get("STUDY_STORE"):
        kwargs.update(store=os.path.join(os.environ["STUDY_STORE"], scheduler),
                      snapshot_seconds=float(os.environ.get("STUDY_SNAPSHOT_SECONDS", "0")))
    res = hj.tune(agent, space, progress_fn=tick, **kwargs)
    df = res.dataframe().drop(columns=["start_time", "end_time", "compute_seconds"], errors="ignore")
    print(json.dumps({"scheduler": scheduler, "process": jax.process_index(), "devices": jax.device_count(),
                      "best": None if res.best is None else res.best.id, "best_score": res.best_score,
                      "trials": df.to_dict(orient="records")}, default=float), flush=True)
