"""Work kept off the start-up path (issue 23) without changing what is served."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from samosval.serving import tune_gc

ROOT = Path(__file__).resolve().parent.parent


def test_api_document_is_built_on_first_use_and_complete(app):
    api = app.extensions["samosval_api"]
    assert api._undocumented, "the document was built while starting"
    paths = api.spec.to_dict()["paths"]
    assert not api._undocumented
    documented = {(path, method) for path, item in paths.items() for method in item if method != "parameters"}
    routed = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    from samosval.api import openapi_path

    assert {(openapi_path(path), method) for path, method in routed} == documented
    tags = [tag["name"] for tag in api.spec.to_dict()["tags"]]
    assert len(tags) == len(set(tags)), "a blueprint was described twice"


def test_openapi_json_equals_the_document_read_before_it(app):
    first = app.extensions["samosval_api"].spec.to_dict()
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    assert set(response.get_json()["paths"]) == set(first["paths"])


def test_tune_gc_turns_the_collector_on_with_a_high_threshold():
    threshold = gc.get_threshold()
    gc.disable()
    try:
        tune_gc()
        assert gc.isenabled()
        assert gc.get_threshold()[0] == 50_000
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
        gc.enable()


def test_app_py_turns_the_collector_off_before_importing():
    source = (ROOT / "app.py").read_text()
    assert 0 < source.index("\ngc.disable()") < source.index("\npatch_all()")


def test_i18n_needs_no_po_parser_when_the_catalogue_is_compiled():
    code = (
        "import sys, samosval.i18n; print(sorted(m for m in sys.modules if m.startswith('babel.messages')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_app_py_patches_everything_reading_entry_points_once():
    """gevent still finds its plugins (the same entry points, group by group), but the
    installed packages are read once, and importlib.metadata is left as it was."""
    code = """
import importlib.metadata as metadata
calls = []
original = metadata.entry_points
def counting(**params):
    calls.append(params)
    return original(**params)
metadata.entry_points = counting
import app
from gevent import monkey
print(len(calls), metadata.entry_points is counting, monkey.is_module_patched("socket"),
      monkey.is_module_patched("threading"))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True", "True", "True"]
