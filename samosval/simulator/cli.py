"""``flask --app app sim-step``: run the engine's ``step()`` on a fake clock from the
terminal, with a seed, so a simulation bug can be reproduced with the very code
the tests use. Do not run it against the database of a running server: the
server's engine would work on the same rows."""

from __future__ import annotations

import random
import time

import click
from flask import current_app
from flask.cli import with_appcontext

from .engine import COUNT_KEYS, SimulationEngine
from .runtime import build_engine, get_state


class _FakeClock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


@click.command("sim-step")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the engine's RNG")
@click.option(
    "--seconds", type=float, default=10.0, show_default=True, help="how much (fake) time to simulate"
)
@click.option(
    "--tick",
    type=float,
    default=SimulationEngine.TICK_SECONDS,
    show_default=True,
    help="fake seconds between two steps",
)
@click.option("--resume", is_flag=True, help="first resume interrupted builds and deployments")
@click.option("--verbose", is_flag=True, help="print the counts of every step that did something")
@with_appcontext
def sim_step_command(seed, seconds, tick, resume, verbose):
    """Step the simulation engine on a fake clock and print what it did."""
    if tick <= 0 or seconds < 0:
        raise click.BadParameter("--tick must be positive and --seconds not negative")
    clock = _FakeClock(time.time())
    # The server's builder: the same speed, watchdogs and failure rates as the app.
    engine = build_engine(current_app, get_state(), clock=clock, rng=random.Random(seed))
    if resume:
        click.echo(f"resumed: {engine.resume(clock())}")
    totals = dict.fromkeys(COUNT_KEYS, 0)
    steps = int(round(seconds / tick))
    for number in range(1, steps + 1):
        clock.now += tick
        counts = engine.step(clock.now)
        for key, value in counts.items():
            totals[key] += value
        if verbose and any(counts.values()):
            done = ", ".join(f"{k}={v}" for k, v in counts.items() if v)
            click.echo(f"t+{number * tick:8.2f}s  {done}")
    click.echo(f"{steps} step(s) over {seconds:g} fake second(s), seed {seed}:")
    for key in COUNT_KEYS:
        click.echo(f"  {key}: {totals[key]}")
