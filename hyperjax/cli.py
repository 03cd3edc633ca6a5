"""The ``hyperjax`` command line (also ``python -m hyperjax``)::

    hyperjax tune CONFIG.yaml --store DIR [--set key=value ...]    # run (or resume) a study
    hyperjax tune CONFIG.yaml --coordinator H:P --num-processes N --process-id I   # one of N processes
    hyperjax resume DIR [--coordinator H:P --num-processes N --process-id I]  # continue a killed study
    hyperjax show DIR [--top 10]                                   # summary and best trials
    hyperjax best DIR [--episodes 64] [--seed 1]                   # re-evaluate the best trial
    hyperjax report DIR [--out DIR]                                # report.html and PNGs
    hyperjax watch DIR [--trial ID] --out best.gif [--stochastic]  # roll out a saved policy
    hyperjax to-optuna DIR sqlite:///optuna.db [--name N]          # export to an Optuna storage

A study configuration is the YAML form of what the store keeps (``hyperjax.config``): ``agent``
(``name`` and static settings), ``space`` (``name: {type: Float|Int|Choice, ...}``),
``scheduler`` (``name`` and options), and ``hj.tune``'s other arguments (``budget``,
``phase_steps``, ``trial_steps``, ``slots``, ``seeds``, ``seed``, ``proposer``, ...); see
``experiments/configs/``. ``--set scheduler.r=0.2`` overrides a value (parsed as YAML). Bad keys
or values fail before anything compiles, naming the key.
"""

from __future__ import annotations

import json
import math
import sys

import click


def _load_config(path: str, sets: tuple[str, ...]) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise click.BadParameter(f"{path} must hold a mapping of settings", param_hint="CONFIG")
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} must look like key.sub=value", param_hint="--set")
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{key}: {p} is not a mapping", param_hint="--set")
        node[leaf] = yaml.safe_load(raw)
    return config


def _summary(res, top: int) -> None:
    click.echo(json.dumps(res.summary()))
    df = res.dataframe()
    done = df[df.trial.isin([t.id for t in res.trials if t.scored])]
    done = done.sort_values("final_score", ascending=False).head(top)
    names = [c for c in df.columns if c.startswith("config/")]
    if len(done):
        click.echo(done[["trial", "final_score", "phases", *names]].to_string(index=False))


def _process_options(command):
    """The options that make a command one of several processes of one study."""
    for option in reversed([
        click.option("--coordinator", default=None, metavar="HOST:PORT",
                      help="several processes: process 0's address (every process gives the same)"),
        click.option("--num-processes", type=int, default=None, help="several processes: how many"),
        click.option("--process-id", type=int, default=None, help="several processes: this one's rank"),
        click.option("--distributed", is_flag=True,
                     help="several processes, found from the cluster's environment (SLURM, TPU pods, Open MPI)"),
    ]):
        command = option(command)
    return command


def _join(coordinator: str | None, num_processes: int | None, process_id: int | None, distributed: bool) -> bool:
    """Joins a multi-process study if the options ask for one (before anything touches a
    device); True if this process is not process 0 (it stays quiet)."""
    import hyperjax as hj

    if not (distributed or coordinator is not None or num_processes is not None):
        return False
    try:
        hj.distributed.initialize(coordinator, num_processes, process_id)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    return not hj.distributed.is_primary()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """hyperjax: JAX-vectorised tuning of RL hyperparameters."""


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--store", default=None,
              help="the study's store directory (an existing one is resumed); with several processes, on a "
                   "filesystem every process sees")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="override a configuration value")
@click.option("--quiet", is_flag=True, help="no progress display")
@_process_options
def tune(config: str, store: str | None, sets: tuple[str, ...], quiet: bool, coordinator: str | None,
         num_processes: int | None, process_id: int | None, distributed: bool) -> None:
    """Run the study CONFIG.yaml describes, recording it in --store."""
    import hyperjax as hj
    from hyperjax.config import tune_arguments

    quiet = _join(coordinator, num_processes, process_id, distributed) or quiet
    try:
        agent, space, kwargs = tune_arguments(_load_config(config, sets))
        callbacks = kwargs.pop("callbacks", [])
        console = [c for c in callbacks if isinstance(c, hj.callbacks.Console)]
        callbacks = [c for c in callbacks if not isinstance(c, hj.callbacks.Console)]
        if not quiet:  # the console is the CLI's default view; --quiet drops it even if the config names it
            callbacks.insert(0, console[0] if console else hj.callbacks.Console())
        res = hj.tune(agent, space, store=store, callbacks=callbacks, **kwargs)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if hj.distributed.is_primary():  # process 0 alone prints
        _summary(res, 5)


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--quiet", is_flag=True, help="no progress display")
@_process_options
def resume(store: str, quiet: bool, coordinator: str | None, num_processes: int | None, process_id: int | None,
           distributed: bool) -> None:
    """Continue the study in STORE from its last committed tick (a study run by several
    processes: by as many processes again, or by any that hold as many devices in all)."""
    import hyperjax as hj

    quiet = _join(coordinator, num_processes, process_id, distributed) or quiet
    try:
        res = hj.resume(store, callbacks=[] if quiet else [hj.callbacks.Console()])
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    if hj.distributed.is_primary():  # process 0 alone prints
        _summary(res, 5)


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--top", default=10, show_default=True, help="best completed trials to list")
def show(store: str, top: int) -> None:
    """Summary and best trials of the study in STORE (finished, killed or running)."""
    import hyperjax as hj

    _summary(hj.load_study(store, params=False), top)


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--episodes", default=64, show_default=True, help="greedy episodes per seed")
@click.option("--seed", default=1, show_default=True, help="evaluation seed (apart from the study's)")
def best(store: str, episodes: int, seed: int) -> None:
    """Re-evaluate the best trial's saved parameters on fresh episodes."""
    import hyperjax as hj

    res = hj.load_study(store)
    if res.best is None or res.best_state is None:
        raise click.ClickException(f"{store}: no completed trial with saved parameters yet")
    score = res.evaluate_best(episodes=episodes, seed=seed)
    click.echo(json.dumps({"trial": res.best.id, "study_score": res.best_score,
                           "reevaluated": None if not math.isfinite(score) else score,
                           "episodes": episodes, "seed": seed, "config": res.best_config}))


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="directory to write into (default: the store)")
def report(store: str, out: str | None) -> None:
    """Write report.html (interactive) and one PNG per figure for the study in STORE
    (finished, killed or running)."""
    from hyperjax.reports import report as write_report

    try:
        written = write_report(store, out)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    for path in written.values():
        click.echo(path)


@main.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option("--trial", type=int, default=None, help="trial id (default: the best trial)")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="a .gif to write (.html for brax environments)")
@click.option("--steps", default=500, show_default=True, help="most env steps to record")
@click.option("--episodes", default=1, show_default=True, help="episodes to record")
@click.option("--stochastic", is_flag=True, help="sample actions (default: greedy)")
@click.option("--seed", default=0, show_default=True, help="the rollout's seed")
@click.option("--member", default=0, show_default=True, help="which of the trial's seeds plays")
def watch(store: str, trial: int | None, out: str, steps: int, episodes: int, stochastic: bool, seed: int,
          member: int) -> None:
    """Roll out a trial's saved policy (the best trial by default) and write it as a GIF."""
    from hyperjax.render import watch as watch_trial

    try:
        rec = watch_trial(store, trial, out, greedy=not stochastic, max_steps=steps, seed=seed, member=member,
                          episodes=episodes)
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps({"out": str(rec.path), "label": rec.label, "returns": rec.returns.tolist(),
                           "lengths": rec.lengths.tolist()}))


@main.command("to-optuna")
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.argument("storage")
@click.option("--name", default=None, help="the Optuna study's name (default: the store directory's name)")
@click.option("--overwrite", is_flag=True, help="replace an Optuna study of that name")
def to_optuna(store: str, storage: str, name: str | None, overwrite: bool) -> None:
    """Write the study in STORE into the Optuna STORAGE (e.g. sqlite:///optuna.db), for
    optuna-dashboard and optuna.visualization."""
    import hyperjax as hj

    try:
        study = hj.to_optuna(store, storage, name, overwrite=overwrite)
    except (ValueError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps({"study_name": study.study_name, "trials": len(study.trials), "storage": storage}))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
