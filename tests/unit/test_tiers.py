"""The serving tiers stay free of TensorFlow: by declared dependencies and by actual imports."""

import json
import re
import subprocess
import sys
import tomllib

from tests.paths import REPO

HEAVY = ("tensorflow", "keras", "tf2onnx", "torch")


def _extra(name: str) -> list[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return data["project"]["optional-dependencies"][name] + data["project"]["dependencies"]


def test_serve_extra_declares_no_tensorflow():
    names = [re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].lower() for req in _extra("serve")]
    assert not [n for n in names if n.startswith(HEAVY)], names


def test_web_and_worker_import_no_tensorflow():
    code = (
        "import json, sys\n"
        "import web, web.api, web.cli, worker.celery_app, worker.tasks, worker.model\n"
        "from web import create_app\n"
        "create_app({'REDIS_URL': 'redis://127.0.0.1:1/0'})\n"
        "from training.bundle import load_bundle\n"
        "load_bundle()\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
