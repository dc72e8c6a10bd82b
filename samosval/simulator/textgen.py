"""Plausible text for the simulation: build logs and runtime log lines.

Pure functions of their inputs and a ``random.Random``, so a seeded engine
always writes the same logs. The build plan is derived from the request
alone (no randomness): after a restart the engine rebuilds the same plan and
continues at ``steps_done``.
"""

from __future__ import annotations

import random
import re
import shlex
from typing import NamedTuple

REGISTRY = "registry.samosval.local"


class BuildStep(NamedTuple):
    kind: str  # clone, from, workdir, copy, run, env, expose, cmd, tag, push
    arg: str


class StepFailure(NamedTuple):
    lines: list[str]
    error: str  # the build's error_message


def hex_id(rng: random.Random, length: int = 12) -> str:
    return f"{rng.getrandbits(length * 4):0{length}x}"


def sha256_digest(rng: random.Random) -> str:
    return "sha256:" + hex_id(rng, 64)


def _instructions(req) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the request's Dockerfile, or of the fields it is
    generated from when the Dockerfile is missing."""
    dockerfile = (req["dockerfile_content"] or "").strip() if "dockerfile_content" in req.keys() else ""  # noqa: SIM118 (sqlite3.Row: `in` looks at values)
    if dockerfile:
        joined = re.sub(r"\s*\\\s*\n\s*", " ", dockerfile)
        found = []
        for raw in joined.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
        if any(word == "FROM" for word, _ in found):
            return found
    found = [("FROM", req["base_image"]), ("WORKDIR", "/app"), ("COPY", ". .")]
    for command in (req["run_commands"] or "").splitlines():
        if command.strip():
            found.append(("RUN", command.strip()))
    if req["entrypoint"]:
        found.append(("ENTRYPOINT", req["entrypoint"].strip()))
    return found


def build_plan(req) -> list[BuildStep]:
    """Every step of a build of ``req``, in order. Deterministic."""
    steps = [BuildStep("clone", req["repo_url"])]
    for word, args in _instructions(req):
        steps.append(BuildStep(word.lower(), args))
    steps.append(BuildStep("tag", f"{req['image_name']}:{req['version_tag']}"))
    steps.append(BuildStep("push", f"{req['image_name']}:{req['version_tag']}"))
    return steps


# Steps a build can fail at, with how likely each kind is to be the culprit.
FAILURE_WEIGHTS = {"from": 1.0, "run": 3.0, "push": 1.0}


def failure_chance(plan: list[BuildStep], kind: str, overall: float) -> float:
    """Probability that one step of ``kind`` fails so that a whole build fails with
    probability ``overall``. Stateless, so a resumed build keeps the same odds."""
    weights = [FAILURE_WEIGHTS.get(step.kind, 0.0) for step in plan]
    total = sum(weights)
    if overall <= 0 or total == 0 or kind not in FAILURE_WEIGHTS:
        return 0.0
    if overall >= 1:
        return 1.0
    # P(no failure) = prod (1 - p_i); with p_i = 1 - q**w_i this is q**total.
    q = (1 - overall) ** (1 / total)
    return 1 - q ** FAILURE_WEIGHTS[kind]


def _docker_steps(plan: list[BuildStep]) -> list[int]:
    return [i for i, step in enumerate(plan) if step.kind not in ("clone", "tag", "push")]


def _step_header(plan: list[BuildStep], index: int) -> str:
    numbered = _docker_steps(plan)
    position = numbered.index(index) + 1
    step = plan[index]
    return f"Step {position}/{len(numbered)} : {step.kind.upper()} {step.arg}".rstrip()


def _layer(rng: random.Random) -> str:
    return f" ---> {hex_id(rng)}"


def _run_output(command: str, rng: random.Random) -> list[str]:
    lowered = command.lower()
    lines = [f" ---> Running in {hex_id(rng)}"]
    if "pip" in lowered:
        names = rng.sample(
            [
                "flask",
                "requests",
                "gunicorn",
                "sqlalchemy",
                "pydantic",
                "redis",
                "psycopg2-binary",
                "celery",
                "jinja2",
                "click",
            ],
            rng.randint(2, 4),
        )
        packages = [(name, f"{rng.randint(1, 3)}.{rng.randint(0, 12)}.{rng.randint(0, 9)}") for name in names]
        for name, version in packages:
            lines.append(f"Collecting {name}")
            lines.append(
                f"  Downloading {name.replace('-', '_')}-{version}-py3-none-any.whl "
                f"({rng.randint(40, 900)} kB)"
            )
        lines.append("Installing collected packages: " + ", ".join(names))
        lines.append("Successfully installed " + " ".join(f"{name}-{version}" for name, version in packages))
    elif "npm" in lowered or "yarn" in lowered:
        lines.append(
            f"added {rng.randint(80, 1400)} packages, and audited {rng.randint(1400, 1600)} "
            f"packages in {rng.randint(4, 40)}s"
        )
        lines.append(f"found {rng.choice([0, 0, 0, 1, 2])} vulnerabilities")
    elif "apt-get" in lowered or "apk" in lowered:
        lines.append("Reading package lists...")
        lines.append("Building dependency tree...")
        lines.append(f"{rng.randint(0, 12)} upgraded, {rng.randint(1, 30)} newly installed, 0 to remove.")
        lines.append(f"Need to get {rng.randint(1, 60)}.{rng.randint(0, 9)} MB of archives.")
    elif "go " in lowered or lowered.startswith("go"):
        lines.append(f"go: downloading github.com/acme/lib v1.{rng.randint(0, 9)}.{rng.randint(0, 9)}")
        lines.append("go: building ./...")
    elif "make" in lowered or "cargo" in lowered or "mvn" in lowered or "gradle" in lowered:
        lines.append(f"Compiling {rng.randint(12, 240)} units")
        lines.append(f"Finished release build in {rng.randint(5, 90)}.{rng.randint(0, 9)}s")
    elif "test" in lowered or "pytest" in lowered:
        passed = rng.randint(20, 400)
        lines.append(f"{passed} passed in {rng.randint(1, 60)}.{rng.randint(10, 99)}s")
    else:
        lines.append(f"+ {command}")
        lines.append("done")
    lines.append(f"Removing intermediate container {hex_id(rng)}")
    return lines


def render_step(
    req, plan: list[BuildStep], index: int, rng: random.Random, *, commit: str, digest: str | None = None
) -> list[str]:
    """The log lines of a successful step ``index`` of ``plan``."""
    step = plan[index]
    if step.kind == "clone":
        return [
            f"Cloning into '/workspace/{req['image_name']}'... ({step.arg})",
            f"Branch: {req['repo_branch']}",
            f"remote: Enumerating objects: {rng.randint(200, 9000)}, done.",
            f"Receiving objects: 100% ({rng.randint(200, 9000)}), "
            f"{rng.randint(1, 40)}.{rng.randint(0, 99):02d} MiB | {rng.randint(5, 90)} MiB/s, done.",
            f"HEAD is now at {commit[:7]}",
            f"Sending build context to Docker daemon  {rng.randint(1, 90)}.{rng.randint(0, 99):02d}MB",
        ]
    if step.kind == "tag":
        return [f"Successfully built {hex_id(rng)}", f"Successfully tagged {step.arg}"]
    if step.kind == "push":
        lines = [f"The push refers to repository [{REGISTRY}/{req['image_name']}]"]
        for _ in range(rng.randint(2, 4)):
            lines.append(f"{hex_id(rng)}: Pushed")
        lines.append(
            f"{req['version_tag']}: digest: {digest or sha256_digest(rng)} size: {rng.randint(900, 4000)}"
        )
        return lines
    lines = [_step_header(plan, index)]
    if step.kind == "from":
        lines.append(
            f"{step.arg.split(':')[-1] if ':' in step.arg else 'latest'}: "
            f"Pulling from library/{step.arg.split(':')[0]}"
        )
        for _ in range(rng.randint(2, 4)):
            lines.append(f"{hex_id(rng)}: Pull complete")
        lines.append(f"Digest: {sha256_digest(rng)}")
        lines.append(f"Status: Downloaded newer image for {step.arg}")
    elif step.kind == "run":
        lines.extend(_run_output(step.arg, rng))
    else:
        lines.append(f" ---> Running in {hex_id(rng)}")
        lines.append(f"Removing intermediate container {hex_id(rng)}")
    lines.append(_layer(rng))
    return lines


def render_failure(req, plan: list[BuildStep], index: int, rng: random.Random) -> StepFailure:
    """The log lines and error message of step ``index`` failing."""
    step = plan[index]
    if step.kind == "from":
        return StepFailure(
            [
                _step_header(plan, index),
                f"Error response from daemon: manifest for {step.arg} not found: manifest unknown",
            ],
            f"Base image {step.arg} could not be pulled (manifest unknown).",
        )
    if step.kind == "push":
        return StepFailure(
            [
                f"The push refers to repository [{REGISTRY}/{req['image_name']}]",
                f"{hex_id(rng)}: Retrying in {rng.randint(2, 9)} seconds",
                "error parsing HTTP 503 response body: registry unavailable",
            ],
            f"Pushing {step.arg} to {REGISTRY} failed: the registry answered 503.",
        )
    code = rng.choice([1, 1, 2, 127])
    lowered = step.arg.lower()
    if "pip" in lowered:
        detail = f"ERROR: No matching distribution found for {rng.choice(['flask==9.9', 'numpy==0.0.1', 'internal-sdk'])}"
    elif "npm" in lowered:
        detail = "npm ERR! code ERESOLVE: unable to resolve dependency tree"
    elif "test" in lowered:
        detail = f"FAILED tests/test_api.py::test_health - AssertionError ({rng.randint(1, 5)} failed)"
    elif code == 127:
        detail = f"/bin/sh: 1: {shlex.split(step.arg)[0] if step.arg.strip() else 'sh'}: not found"
    else:
        detail = "error: process exited unexpectedly"
    return StepFailure(
        [
            _step_header(plan, index),
            f" ---> Running in {hex_id(rng)}",
            detail,
            f"The command '/bin/sh -c {step.arg}' returned a non-zero code: {code}",
        ],
        f"RUN {step.arg} failed with exit code {code}.",
    )


# --- runtime logs -------------------------------------------------------------

_PATHS = (
    "/api/v1/orders",
    "/api/v1/users/{n}",
    "/api/v1/invoices",
    "/health",
    "/metrics",
    "/api/v1/cart/{n}",
    "/login",
    "/api/v1/search?q=item{n}",
    "/static/app.{n}.js",
)
_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")

_INFO = (
    lambda r: (
        f"{r.choice(_METHODS)} {r.choice(_PATHS).format(n=r.randint(1, 9999))} "
        f"{r.choice((200, 200, 200, 201, 204, 304))} {r.randint(2, 180)}ms"
    ),
    lambda r: f"worker {r.randint(1, 8)} handled {r.randint(10, 500)} requests in the last minute",
    lambda r: f"cache hit ratio {r.randint(70, 99)}.{r.randint(0, 9)}%",
    lambda r: f"db pool: {r.randint(1, 10)} active, {r.randint(0, 10)} idle connections",
    lambda r: f"processed job #{r.randint(1000, 99999)} in {r.randint(5, 900)}ms",
    lambda r: f"health check ok ({r.randint(1, 9)}ms)",
    lambda r: f"scheduled task 'cleanup' removed {r.randint(0, 120)} expired sessions",
)
_WARN = (
    lambda r: (
        f"slow request GET {r.choice(_PATHS).format(n=r.randint(1, 9999))} took {r.randint(800, 4000)}ms"
    ),
    lambda r: f"retrying connection to redis ({r.randint(1, 3)}/3)",
    lambda r: (
        f"deprecated API /api/v0 called by client {r.randint(10, 250)}.{r.randint(0, 255)}.0.{r.randint(1, 254)}"
    ),
    lambda r: f"queue backlog {r.randint(100, 900)} messages",
)
_ERROR = (
    lambda r: f"POST /api/v1/orders 500 {r.randint(20, 900)}ms: IntegrityError duplicate key",
    lambda r: f"upstream timeout after {r.choice((5, 10, 30))}s calling payments-service",
    lambda r: "unhandled exception in worker: KeyError 'customer_id'",
    lambda r: f"database connection lost, reconnecting (attempt {r.randint(1, 5)})",
)

LEVELS = ("INFO", "WARN", "ERROR")
LEVEL_WEIGHTS = (80, 15, 5)  # spec 8.5
_CUMULATIVE = (80, 95, 100)


MEMORY_WARN_PERCENT = 80


def runtime_line(
    rng: random.Random, name: str, image_tag: str, replicas: int, ram: float | None = None
) -> tuple[str, str]:
    """One (level, text) runtime line of a running deployment. A memory warning is
    written only while ``ram`` (the RAM the charts show, %) is above the threshold,
    and names that value: the log agrees with the metrics."""
    roll = rng.random() * 100
    if roll < _CUMULATIVE[0]:
        level, makers = "INFO", _INFO
    elif roll < _CUMULATIVE[1]:
        level, makers = "WARN", _WARN
    else:
        level, makers = "ERROR", _ERROR
    replica = rng.randrange(replicas) + 1 if replicas > 1 else 1
    message = makers[rng.randrange(len(makers))](rng)
    if level == "WARN" and ram is not None and ram > MEMORY_WARN_PERCENT and rng.random() < 0.5:
        message = f"memory usage {ram:.0f}% of limit (above {MEMORY_WARN_PERCENT}%)"
    return level, f"[{name}-{replica} {image_tag}] {message}"


def deploy_failure_reason(rng: random.Random, image_tag: str, replicas: int) -> str:
    """Why a simulated rollout failed, in the words an orchestrator would use."""
    return rng.choice(
        (
            f"CrashLoopBackOff: a container of {image_tag} exited with code 1 during start-up",
            "readiness probe failed: HTTP 503 on /health after 3 attempts",
            f"ImagePullBackOff: could not pull {REGISTRY}/{image_tag}",
            f"insufficient memory on the node to schedule {replicas} replica(s)",
            "port already allocated on the node",
        )
    )
