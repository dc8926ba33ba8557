"""No pickle anywhere: Celery speaks JSON only, and loading a model bundle never unpickles."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.paths import REPO, SAVED_MODELS
from worker.celery_app import make_celery

SOURCE_DIRS = ("web", "worker", "training", "benchmarks")
FORBIDDEN = re.compile(
    r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|cloudpickle|shelve)\b"
    r"|allow_pickle\s*=\s*True|torch\.load\(|pd\.read_pickle|\.to_pickle\(",
    re.M,
)


def test_celery_accepts_json_only():
    conf = make_celery("redis://example:6379/0").conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"] and list(conf.result_accept_content) == ["json"]
    assert conf.event_serializer == "json"
    assert conf.task_soft_time_limit and conf.task_time_limit > conf.task_soft_time_limit


def test_no_pickle_in_the_source_tree():
    offenders = []
    for folder in SOURCE_DIRS:
        for path in (REPO / folder).rglob("*.py"):
            for match in FORBIDDEN.finditer(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(REPO)}: {match.group(0).strip()}")
    assert not offenders, offenders


AUDITED_LOAD = r"""
import sys
def hook(event, args):
    if event.startswith("pickle."):
        raise SystemExit(f"PICKLE USED: {event} {args!r:.200}")
sys.addaudithook(hook)
from training.bundle import load_bundle, read_current
models = __import__("pathlib").Path(sys.argv[1])
bundle = load_bundle(models / read_current(models))
print("loaded", bundle.version)
"""


def test_bundle_loads_without_unpickling():
    """Load the shipped bundle in a fresh interpreter under an audit hook that fails on any
    ``pickle.find_class`` (every unpickling of an object goes through it)."""
    if not (SAVED_MODELS / "current").exists():
        import pytest

        pytest.skip("no shipped model bundle")
    run = subprocess.run(
        [sys.executable, "-c", AUDITED_LOAD, str(SAVED_MODELS)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "loaded" in run.stdout and "PICKLE USED" not in run.stdout + run.stderr


def test_the_audit_hook_catches_pickle():
    code = AUDITED_LOAD.split("from training")[0] + "import pickle\npickle.loads(pickle.dumps(object()))\n"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "PICKLE USED: pickle.find_class" in run.stdout + run.stderr
