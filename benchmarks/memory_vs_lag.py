"""Memory against lag: recall accuracy of RNN, LSTM and GRU as the token to recall lies further back.

Run it from the repository root (it writes its results after every point, so it can be stopped and resumed)::

    nice -n 10 .venv/bin/python benchmarks/memory_vs_lag.py                 # the committed sweep (CPU, hours)
    .venv/bin/python benchmarks/memory_vs_lag.py --lags 5 10 --seeds 1 --lrs 0.003 --out /tmp/quick.json
    .venv/bin/python benchmarks/memory_vs_lag.py --resume                   # finish a sweep that was stopped

What every point holds equal (``companion.memory``): the task (``RecallTask``: one of 8 symbols, then ``lag``
steps of random distractors or of a constant blank, then the answer); the parameter count (each model's hidden
size gives the whole classifier, recurrent layer and head, about ``--parameters`` parameters); the optimiser
(Adam, gradient clipping at global norm 1) and its budget (at most ``--steps`` updates of ``--batch-size`` fresh
examples; a run stops early once its validation accuracy reaches 99 %); full backpropagation through time over all
``lag + 1`` steps. The learning rate is chosen for each model, task and lag on a small grid (``--lrs``) by the
validation accuracy of a tuning seed (``--tuning-seed``), which is not among the reported seeds; the reported seeds
(``--seeds``) then train with it and are scored on a test set no run trains or stops on.

Models (``companion.memory.recurrent_builders``, all fused ``torch.nn`` layers): ``rnn``, ``lstm`` (PyTorch's
initialisation, forget-gate bias about 0), ``lstm-forget1`` (forget bias 1), ``lstm-chrono`` (chrono
initialisation for the task's length) and ``gru``. Any other layer that follows the course's recurrent interface
(``(B, T, D) -> (B, T, H)`` features, with ``input_size`` and ``hidden_size`` attributes: a Transformer encoder, a
minGRU) joins without changing this script: ``--builders some.module:BUILDERS --models transformer`` adds the
builders of a dict ``{name: build(hidden_size, task) -> layer}``, with ``--out`` a file of its own.

Lags run in increasing order; a model whose mean accuracy is within 5 points of chance at two lags in a row is not
run at longer lags (the row says so), and the sweep ends at ``--max-lag``, when no model is left, or when
``--cpu-budget`` seconds of CPU time are spent.

The results file (``benchmarks/results/memory_vs_lag.json``) holds the configuration, the environment report
(``companion.environment_report``), the total CPU time, every invocation that added to it (``runs``: a resumed
sweep may extend one model to a longer lag), and one row per (task, model, lag): hidden size, parameter
count, the grid's validation accuracies, the chosen learning rate, each seed's test accuracy, updates made and CPU
seconds, and their mean, spread (min, max, standard deviation) and chance level. ``book/part2/lstm.ipynb`` plots it
and reruns one point live; Chapter 2 takes the RNN's rows as its closing baseline.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing the companion

from companion.device import small_model_threads  # noqa: E402
from companion.memory import (  # noqa: E402
    Budget,
    RecallTask,
    parameter_count,
    recall_model,
    recall_point,
    recurrent_builders,
)
from companion.reproducibility import ResultsWriter, command_line  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "memory_vs_lag.json"
MODELS = ("rnn", "lstm", "lstm-forget1", "lstm-chrono", "gru")
TASKS = ("distractors", "blank")
LAGS = (5, 10, 20, 50, 100, 200, 400, 800)
NEAR_CHANCE = 0.05  # a mean accuracy within this of chance counts as "at chance"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The sweep's options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help=f"names of builders (default {MODELS})")
    parser.add_argument(
        "--builders",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="add the builders of a dict {name: build(hidden_size, task) -> layer} defined in MODULE (repeatable)",
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--lags", nargs="+", type=int, default=list(LAGS))
    parser.add_argument("--max-lag", type=int, default=max(LAGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--tuning-seed", type=int, default=0)
    parser.add_argument("--lrs", nargs="+", type=float, default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--parameters", type=int, default=12_000)
    parser.add_argument("--steps", type=int, default=Budget.steps)
    parser.add_argument("--batch-size", type=int, default=Budget.batch_size)
    parser.add_argument("--cpu-budget", type=float, default=float("inf"), help="stop after this many CPU seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--device", default="cpu", help="where the models train (cuda on a GPU)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in --out and add the rest")
    return parser.parse_args(argv)


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, lowest, highest and (sample) standard deviation of a list of scores over seeds."""
    return {
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def builders(args: argparse.Namespace) -> dict:
    """The course's builders (``companion.memory.recurrent_builders``) and those that ``--builders`` adds."""
    found = recurrent_builders()
    for spec in args.builders:
        module, _, name = spec.partition(":")
        found |= getattr(importlib.import_module(module), name)
    unknown = sorted(set(args.models) - set(found))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {sorted(found)} (add more with --builders MODULE:NAME)")
    return found


def run_point(model: str, task: RecallTask, budget: Budget, args: argparse.Namespace) -> dict:
    """Tune the learning rate on the tuning seed, then train every reported seed with it: one row."""
    build = builders(args)[model]
    tuning = {}
    for lr in args.lrs:
        result, hidden = recall_point(
            build, task, replace(budget, lr=lr), args.tuning_seed, args.parameters, device=args.device
        )
        tuning[lr] = result
    # The best validation accuracy wins; among equals, the run that got there in fewer updates, then lower loss.
    lr = min(tuning, key=lambda lr: (-tuning[lr].validation_accuracy, tuning[lr].steps, tuning[lr].train_loss))
    runs = [
        recall_point(build, task, replace(budget, lr=lr), seed, args.parameters, device=args.device)[0]
        for seed in args.seeds
    ]
    accuracies = [run.accuracy for run in runs]
    return {
        "task": task.name,
        "model": model,
        "lag": task.lag,
        "status": "run",
        "hidden_size": hidden,
        "parameters": parameter_count(recall_model(build, hidden, task)),
        "lr": lr,
        "tuning_seed": args.tuning_seed,
        "tuning": {str(lr): result.to_dict() for lr, result in tuning.items()},
        "seeds": list(args.seeds),
        "runs": [run.to_dict() for run in runs],
        "accuracies": accuracies,
        **summarise(accuracies),
        "chance": task.chance,
        "cpu_seconds": sum(run.cpu_seconds for run in runs) + sum(result.cpu_seconds for result in tuning.values()),
    }


def at_chance(row: dict) -> bool:
    """Whether a row's mean accuracy is within ``NEAR_CHANCE`` of chance."""
    return row["status"] == "run" and row["mean"] < row["chance"] + NEAR_CHANCE


def skip_reason(rows: list[dict], task: str, model: str) -> str | None:
    """Why (task, model) is not run at a longer lag: at chance at its last two lags, or skipped before."""
    earlier = sorted((row for row in rows if row["task"] == task and row["model"] == model), key=lambda r: r["lag"])
    if earlier and earlier[-1]["status"] == "skipped":
        return earlier[-1]["reason"]
    if len(earlier) >= 2 and at_chance(earlier[-1]) and at_chance(earlier[-2]):
        return f"at chance at lags {earlier[-2]['lag']} and {earlier[-1]['lag']}"
    return None


def main(argv: list[str] | None = None) -> None:
    """Run the sweep and write the results file after every point."""
    args = parse_args(argv)
    builders(args)  # fail early on an unknown model
    device = torch.device("cpu")
    threads = small_model_threads(device)
    budget = Budget(steps=args.steps, batch_size=args.batch_size)
    rows: list[dict] = []
    previous_cpu, earlier_runs, earlier_config = 0.0, [], {}
    if args.resume and args.out.exists():
        saved = json.loads(args.out.read_text())
        rows, previous_cpu, earlier_config = saved["rows"], saved["cpu_seconds_total"], saved["config"]
        earlier_runs = saved.get("runs") or [
            {"command": saved["command"], "stopped": saved["stopped"], "cpu_seconds": saved["cpu_seconds_total"]}
        ]
    done = {(row["task"], row["model"], row["lag"]): row for row in rows}
    start_wall = time.time()
    command = command_line(__file__, sys.argv[1:] if argv is None else argv)
    writer = ResultsWriter(command, device=device, cpu_seconds_before=previous_cpu)
    stopped = "all lags run"

    def union(key: str, values: list) -> list:
        """What this run covers and what the runs it resumes covered (a resumed sweep may extend one model)."""
        order = [*MODELS, *TASKS]
        merged = set(values) | set(earlier_config.get(key, []))
        if key == "lags":
            return sorted(merged)
        return sorted(merged, key=lambda value: (order.index(value) if value in order else len(order), value))

    def save() -> None:
        this_run = {"command": command, "stopped": stopped, "cpu_seconds": writer.cpu_seconds_total() - previous_cpu}
        results = {
            "runs": [*earlier_runs, this_run],
            "config": {
                "models": union("models", args.models),
                "tasks": union("tasks", args.tasks),
                "lags": union("lags", [lag for lag in args.lags if lag <= args.max_lag]),
                "seeds": args.seeds,
                "tuning_seed": args.tuning_seed,
                "lrs": args.lrs,
                "parameters": args.parameters,
                "budget": asdict(budget),
                "symbols": RecallTask(1).symbols,
                "near_chance": NEAR_CHANCE,
                "threads": threads,
            },
            "wall_seconds_this_run": time.time() - start_wall,
            "stopped": stopped,
            "rows": sorted(rows, key=lambda r: (r["task"], r["model"], r["lag"])),
        }
        writer.write(args.out, results)

    for lag in sorted(lag for lag in args.lags if lag <= args.max_lag):
        active = 0
        for task_name in args.tasks:
            task = RecallTask(lag, distractors=task_name == "distractors")
            for model in args.models:
                if (task.name, model, lag) in done:
                    active += done[task.name, model, lag]["status"] == "run"
                    continue
                if writer.cpu_seconds_total() > args.cpu_budget:
                    stopped = f"CPU budget of {args.cpu_budget:.0f} s spent before lag {lag}"
                    save()
                    print(stopped, flush=True)
                    return
                reason = skip_reason(rows, task.name, model)
                if reason:
                    rows.append({"task": task.name, "model": model, "lag": lag, "status": "skipped", "reason": reason})
                else:
                    active += 1
                    row = run_point(model, task, budget, args)
                    rows.append(row)
                    print(
                        f"{task.name:11} {model:12} lag {lag:4}: accuracy {row['mean']:.3f} "
                        f"({row['min']:.3f}-{row['max']:.3f}), lr {row['lr']}, {row['cpu_seconds']:.0f} CPU s",
                        flush=True,
                    )
                save()
        if active == 0:
            stopped = f"every model at chance before lag {lag}"
            break
    save()
    print(f"done: {stopped}; {writer.cpu_seconds_total():.0f} CPU seconds in all", flush=True)


if __name__ == "__main__":
    main()
