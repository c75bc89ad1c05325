"""The sovereignty proof: for every set of chunk labels × the external generator's maximum label ×
PII redaction on/off, the external stand-in's own log of what it received holds no text of a chunk
above the allowed label and, with redaction on, none of the planted PII values.

It cannot pass by accident: every chunk and PII value is a known canary, and each case also checks
the other side (allowed chunks did arrive; with redaction off the PII did arrive), so an empty or
broken request log fails the test. The requests go through the real ``openai`` client."""

from __future__ import annotations

import itertools
import json

import pytest
from standins.openai_server import OpenAIStandIn

from enclave.contracts import Classification, GenerationRequest
from enclave.llms import EgressGuard, ExtractiveGenerator, FallbackRouter
from enclave.llms.audit_log import AuditLog
from enclave.llms.egress_policy import EgressPolicy
from enclave.llms.openai_generator import OpenAIGenerator
from enclave.llms.pii_redactor import PiiRedactor
from enclave.prompts import answer_messages

#: PII planted in every chunk, in the question and in the chat history (valid checksums: these must be caught)
PII = {
    "PERSON": "Sigrid Bjørnstad",
    "EMAIL_ADDRESS": "kari.nordmann@halvard.no",
    "PHONE_NUMBER": "+47 912 34 567",
    "IBAN_CODE": "NO9386011117947",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "NO_NATIONAL_ID": "15076500565",
}
LABEL_SETS = [combo for n in range(1, 5) for combo in itertools.combinations(tuple(Classification), n)]


class Chunk:
    def __init__(self, case: int, label: str) -> None:
        self.id = f"chunk-{case}-{label}"
        self.classification = label
        self.canary = f"CANARY-{label.upper()}-{case:03d}-7f3a"
        self.title = f"Title {self.canary}"
        self.section = "Details"
        self.text = (f"{self.canary} the HX-400 pump is rated for 400 litres per minute. Contact {PII['PERSON']} at "
                     f"{PII['EMAIL_ADDRESS']} or {PII['PHONE_NUMBER']}; refunds go to {PII['IBAN_CODE']}, "
                     f"card {PII['CREDIT_CARD']}, employee {PII['NO_NATIONAL_ID']}.")


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    redactor = PiiRedactor()
    redactor.redact("warm up")  # presidio loads once for the module
    return redactor


@pytest.mark.parametrize("redact", [True, False], ids=["redaction-on", "redaction-off"])
@pytest.mark.parametrize("max_label", tuple(Classification))
def test_nothing_above_the_label_and_no_pii_ever_reaches_the_external_model(max_label, redact, redactor, tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    with OpenAIStandIn(models=["gpt-4o-mini"]) as server:
        external = OpenAIGenerator("gpt-4o-mini", base_url=server.url, api_key="test", first_token_timeout=5)
        policy = EgressPolicy(max_label, redactor=redactor if redact else None)
        router = FallbackRouter([EgressGuard(external, policy, audit=audit), ExtractiveGenerator()])
        for case, labels in enumerate(LABEL_SETS):
            chunks = [Chunk(case, label) for label in labels]
            question = f"What is the HX-400 rated for? Reply to {PII['EMAIL_ADDRESS']} or {PII['PHONE_NUMBER']}."
            history = [{"role": "user", "content": f"My card is {PII['CREDIT_CARD']}, id {PII['NO_NATIONAL_ID']}."}]
            before = len(server.chat_requests)
            generation = router.run(GenerationRequest(question, chunks, answer_messages(question, chunks, history),
                                                      history=history, principal=f"case-{case}"))

            allowed = [c for c in chunks if Classification.rank(c.classification) <= Classification.rank(max_label)]
            above = [c for c in chunks if c not in allowed]
            new = server.chat_requests[before:]
            received = "\n".join([r["raw"] for r in new] + [json.dumps(r["body"], ensure_ascii=False) for r in new])
            if not allowed:  # nothing may leave: the external model is not called at all
                assert new == [] and generation.generator == "extractive", (case, labels)
                continue
            assert len(new) == 1 and generation.generator == "openai", (case, labels, generation.attempts)
            for chunk in above:
                assert chunk.canary not in received, (case, labels, max_label, chunk.canary)
            for chunk in allowed:  # the other side: the log holds what did leave
                assert chunk.canary in received, (case, labels, max_label, chunk.canary)
            for kind, value in PII.items():
                assert (value in received) == (not redact), (case, kind, redact)
                assert (f"<{kind}>" in received) == redact, (case, kind, redact)

    records = list(audit.records())
    assert len(records) == len(LABEL_SETS)
    for case, (record, labels) in enumerate(zip(records, LABEL_SETS)):
        rank = Classification.rank(max_label)
        assert record.principal == f"case-{case}"
        assert record.chunks_sent == [f"chunk-{case}-{lab}" for lab in labels if Classification.rank(lab) <= rank]
        assert record.chunks_withheld == [f"chunk-{case}-{lab}" for lab in labels if Classification.rank(lab) > rank]
        assert record.outcome == ("sent" if record.chunks_sent else "refused")
        if record.outcome == "sent" and redact:
            # question (email, phone) + history (card, id) + every sent chunk (all six) + none in titles; the NER
            # model also takes a title's "Title CANARY-..." for a name now and then: PERSON is at least one per chunk
            sent = len(record.chunks_sent)
            patterns = {kind: n for kind, n in record.redactions.items() if kind != "PERSON"}
            assert patterns == {"EMAIL_ADDRESS": 1 + sent, "PHONE_NUMBER": 1 + sent, "IBAN_CODE": sent,
                                "CREDIT_CARD": 1 + sent, "NO_NATIONAL_ID": 1 + sent}, (case, record)
            assert record.redactions["PERSON"] >= sent, (case, record)
        elif record.outcome == "sent":
            assert record.redactions == {}
