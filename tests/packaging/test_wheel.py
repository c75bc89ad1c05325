"""The wheel a user installs: one ``enclave`` namespace, nothing else at the top level.

The wheel is built from this checkout and installed into a fresh virtual environment; its dependencies
come from the test environment's site-packages (added as a plain path, so the editable install's
finder there stays inactive). From another directory, the public API imports, ``enclave --help`` runs,
the package data (prompt templates, the chat page) is there, a parse runs through the worker script
inside the installed package, and no top-level ``server``, ``flows``, ``indexes``... is importable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ("connectors", "indexes", "prompts", "llms", "flows", "server")


PROBE = r"""
import importlib.util, json, sys
from pathlib import Path
from enclave import AnswerPipeline, IngestPipeline, Settings, __all__ as public
import enclave
from enclave.contracts import SourceDocument
from enclave.indexes import DocumentParser
from enclave.prompts import PromptTemplate

doc = SourceDocument(doc_id="t:a.md", source="t", uri="file:///a.md", title="a.md", version="1", size=20,
                     groups=("g",), classification="internal", extension=".md")
parser = DocumentParser(timeout=60)
try:
    parsed = parser.run(doc, b"# Leave\n\nTwenty-five days.\n")
finally:
    parser.close()
static = Path(enclave.__file__).parent / "server" / "static"
print(json.dumps({
    "enclave": enclave.__file__,
    "public": len(public),
    "top_level": {name: importlib.util.find_spec(name) is not None for name in %(stages)r},
    "prompt": PromptTemplate("answer_system.md").render()[:40],
    "parsed": parsed.text,
    "static": sorted(p.name for p in static.iterdir()),
    "torch_loaded": "torch" in sys.modules,
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True, timeout=600)
    [built] = out.glob("enclave-*.whl")
    return built


def test_the_wheel_holds_only_the_enclave_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"enclave"}, top
    for path in ("enclave/server/static/index.html", "enclave/prompts/templates/answer_system.md",
                 "enclave/indexes/parse_worker.py", "enclave/contracts.py", "enclave/flows/ingest_flow.py"):
        assert path in names, path


@pytest.mark.slow  # a venv and a pip install: ~6 s, kept out of the fast lane
def test_installed_from_the_wheel_it_works_from_another_directory(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python, enclave_cli = env_dir / "bin" / "python", env_dir / "bin" / "enclave"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    # the dependencies: this environment's site-packages, as a plain path (its .pth files, the editable
    # install's finder among them, are not run from there)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}

    probe = subprocess.run([str(python), "-c", PROBE % {"stages": STAGES}], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(found["enclave"]).is_relative_to(site), found["enclave"]  # the wheel's copy, not this checkout
    assert found["top_level"] == dict.fromkeys(STAGES, False)
    assert found["public"] > 40 and not found["torch_loaded"]
    assert found["prompt"] and "Twenty-five days." in found["parsed"]
    assert {"index.html", "chat.js", "chat.css"} <= set(found["static"])

    helped = subprocess.run([str(enclave_cli), "--help"], cwd=elsewhere, env=env, capture_output=True, text=True,
                            timeout=120)
    assert helped.returncode == 0, helped.stderr
    for command in ("ingest", "status", "ask", "serve", "eval"):
        assert command in helped.stdout
    as_module = subprocess.run([str(python), "-m", "enclave", "--help"], cwd=elsewhere, env=env, capture_output=True,
                               text=True, timeout=120)
    assert as_module.returncode == 0 and "ingest" in as_module.stdout, as_module.stderr
