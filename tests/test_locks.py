"""The lock files agree with the ranges: every requirement is pinned to a version its
range allows, and the dev lock pins the app's packages exactly as the app lock does.
(A range changed without regenerating the locks fails here; README, "Run the tests".)"""

from __future__ import annotations

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.live import ROOT


def ranges(name: str) -> list[Requirement]:
    lines = (ROOT / name).read_text().splitlines()
    return [
        Requirement(line)
        for line in (line.split("#")[0].strip() for line in lines)
        if line and not line.startswith("-")
    ]


def pins(name: str) -> dict[str, str]:
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not pinned with =="
            found[canonicalize_name(package)] = version
    return found


@pytest.mark.parametrize(
    ("ranges_file", "lock_file"),
    [
        ("requirements.txt", "requirements.lock"),
        ("requirements-dev.txt", "requirements-dev.lock"),
    ],
)
def test_it_pins_every_requirement_within_its_range(ranges_file, lock_file):
    locked = pins(lock_file)
    for requirement in ranges(ranges_file):
        version = locked.get(canonicalize_name(requirement.name))
        assert version, f"{requirement.name} is not in {lock_file}"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock_file} pins {requirement.name}=={version}, outside {requirement.specifier}"
        )


def test_the_dev_lock_installs_what_the_app_lock_pins():
    app, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: dev.get(name) for name in app} == app
