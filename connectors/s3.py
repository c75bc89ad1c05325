"""S3 and S3-compatible object stores (MinIO, Ceph, ...): one document per object, through boto3."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

from enclave.connectors.path_patterns import matches_any
from enclave.contracts import Classification, SourceDocument, SourceUnavailable

logger = logging.getLogger(__name__)

#: Where an object's groups and classification come from: its user metadata (``x-amz-meta-*``, one
#: HeadObject per object and listing), its tags (one GetObjectTagging) or the source's settings alone.
ACL_FROM = ("metadata", "tags", "source")


class S3Connector:
    """A bucket (under a prefix): one [SourceDocument][enclave.contracts.SourceDocument] per object.

    Usage::

        connector = S3Connector("contracts", "legal-docs", prefix="contracts/",
                                endpoint_url="http://127.0.0.1:9000", acl_from="metadata",
                                groups=["legal"], classification="confidential")
        for doc in connector.list_documents():       # ListObjectsV2 pages (+ a HEAD each for metadata)
            data = connector.fetch(doc)              # GetObject, only for new or changed objects
        connector.requests                           # Counter({"ListObjectsV2": 1, "HeadObject": 12, ...})

    ``doc_id`` is ``"<source>:<key>"``; ``version`` the object's ETag (a new upload changes it; a metadata
    or tag change does not, so a permission change costs no fetch); ``uri`` ``s3://bucket/key``. Keys
    ending in ``/`` (folder markers) are skipped; ``include``/``exclude`` globs match the key after
    ``prefix``. An object's groups are the value of ``groups_key`` in its metadata or tags (``acl_from``),
    split at ``groups_separator`` (default ``,`` for metadata and a space for tags, whose values may not
    hold commas), its classification the value of ``classification_key`` (a label Enclave does
    not know reads as ``restricted``: fail closed); without the key, the connector's ``groups`` and
    ``classification`` apply. Credentials: ``access_key_id``/``secret_access_key``, else boto3's chain
    (``AWS_*`` variables, ``~/.aws``, an instance role); they never appear in an error message.
    ``timeout`` in seconds per request; throttling and 5xx are retried by botocore (standard mode,
    ``max_attempts``).

    ``list_documents`` raises [SourceUnavailable][enclave.contracts.SourceUnavailable] when the bucket
    cannot be listed to its end (unreachable, denied, missing, a 5xx after the retries, a truncated page):
    the ingest then deletes nothing. ``fetch`` raises FileNotFoundError (object gone) or PermissionError
    (denied), which the ingest records as the document failing, and ConnectionError for an outage, which
    the ingest task retries. ``requests`` counts the API calls made, by operation.
    """

    def __init__(
        self,
        source: str,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        acl_from: str = "metadata",
        groups_key: str = "groups",
        classification_key: str = "classification",
        groups_separator: str | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        groups: list[str] | tuple[str, ...] | None = None,
        classification: str = Classification.INTERNAL,
        page_size: int = 1000,
        timeout: float = 30.0,
        max_attempts: int = 4,
    ) -> None:
        if acl_from not in ACL_FROM:
            raise ValueError(f"acl_from must be one of {', '.join(ACL_FROM)}, not {acl_from!r}")
        self.source = source
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = (access_key_id, secret_access_key)
        self.acl_from = acl_from
        self.groups_key = groups_key.lower()
        self.classification_key = classification_key.lower()
        self.groups_separator = groups_separator or ("," if acl_from == "metadata" else " ")
        self.include = include or ["**/*"]
        self.exclude = exclude or []
        self.groups = tuple(groups or ["everyone"])
        self.classification = str(classification)
        self.page_size = page_size
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.requests: Counter[str] = Counter()
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3Connector({self.source!r}, s3://{self.bucket}/{self.prefix}, endpoint={self.endpoint_url!r})"

    def __getstate__(self) -> dict[str, Any]:  # a boto3 client does not pickle (Dask workers make their own)
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> Any:
        """The boto3 S3 client, made on first use (thread-safe; counts its calls into ``requests``)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            key_id, secret = self._credentials
            client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                aws_access_key_id=key_id, aws_secret_access_key=secret,
                config=Config(connect_timeout=self.timeout, read_timeout=self.timeout,
                              retries={"mode": "standard", "max_attempts": self.max_attempts}),
            )
            client.meta.events.register("before-call.s3", self._count)
            self._client = client
        return self._client

    def _count(self, model: Any, **_: Any) -> None:
        self.requests[model.name] += 1

    @property
    def where(self) -> str:
        """``s3://bucket/prefix``, for messages."""
        return f"s3://{self.bucket}/{self.prefix}"

    def list_documents(self) -> Iterator[SourceDocument]:
        """Every object under the prefix that the globs admit, in key order. Raises SourceUnavailable."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix, "MaxKeys": self.page_size}
            if token:
                params["ContinuationToken"] = token
            page = self._listing_call("list_objects_v2", **params)
            for item in page.get("Contents", []):
                doc = self._document(item)
                if doc is not None:
                    yield doc
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise SourceUnavailable(f"source {self.source!r}: listing {self.where} was cut off "
                                        "(a truncated page without a continuation token)")

    def fetch(self, document: SourceDocument) -> bytes:
        """The object's bytes (GetObject). Raises FileNotFoundError, PermissionError or ConnectionError."""
        key = self._key(document)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code, status = _error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"s3://{self.bucket}/{key} is gone") from None
            if status in (401, 403):
                raise PermissionError(f"s3://{self.bucket}/{key}: access denied ({code})") from None
            raise ConnectionError(f"s3://{self.bucket}/{key}: {code} ({status})") from None
        except BotoCoreError as exc:
            raise ConnectionError(f"s3://{self.bucket}/{key}: {type(exc).__name__}: {exc}") from None

    # -- listing --------------------------------------------------------------------------------------------------------
    def _document(self, item: dict[str, Any]) -> SourceDocument | None:
        key: str = item["Key"]
        rel = key[len(self.prefix):].lstrip("/")
        if not rel or key.endswith("/"):
            return None
        if not matches_any(rel, self.include) or matches_any(rel, self.exclude):
            return None
        labels = self._labels(key)
        if labels is None:  # deleted between the listing and its HEAD: it is gone
            return None
        name = key.rsplit("/", 1)[-1]
        return SourceDocument(
            doc_id=f"{self.source}:{key}", source=self.source, uri=f"s3://{self.bucket}/{key}", title=name,
            version=str(item.get("ETag", "")).strip('"'), size=int(item.get("Size", 0)),
            groups=self._groups(labels), classification=self._classification(labels, key),
            extension=f".{name.rsplit('.', 1)[-1].lower()}" if "." in name else "",
            modified=item["LastModified"].isoformat(timespec="seconds") if item.get("LastModified") else "",
        )

    def _labels(self, key: str) -> dict[str, str] | None:
        """The object's metadata or tags (keys lowercased); {} for ``acl_from: source``; None if it is gone."""
        if self.acl_from == "source":
            return {}
        if self.acl_from == "metadata":
            head = self._listing_call("head_object", missing_ok=True, Bucket=self.bucket, Key=key)
            return None if head is None else {k.lower(): v for k, v in head.get("Metadata", {}).items()}
        tags = self._listing_call("get_object_tagging", missing_ok=True, Bucket=self.bucket, Key=key)
        return None if tags is None else {t["Key"].lower(): t["Value"] for t in tags.get("TagSet", [])}

    def _groups(self, labels: dict[str, str]) -> tuple[str, ...]:
        if self.groups_key not in labels:
            return self.groups
        return tuple(g.strip() for g in labels[self.groups_key].split(self.groups_separator) if g.strip())

    def _classification(self, labels: dict[str, str], key: str) -> str:
        label = labels.get(self.classification_key)
        if label is None:
            return self.classification
        if label.strip().lower() not in {c.value for c in Classification}:
            logger.warning("source %s: s3://%s/%s has classification %r, which Enclave does not know: read as "
                           "restricted", self.source, self.bucket, key, label)
            return Classification.RESTRICTED.value
        return label.strip().lower()

    def _listing_call(self, operation: str, missing_ok: bool = False, **params: Any) -> Any:
        """One call of the listing; any failure is SourceUnavailable (None for a missing object if ``missing_ok``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            code, status = _error_code(exc)
            if missing_ok and code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise SourceUnavailable(f"source {self.source!r}: listing {self.where} failed: {code} "
                                    f"(HTTP {status})") from None
        except BotoCoreError as exc:
            raise SourceUnavailable(f"source {self.source!r}: listing {self.where} failed: "
                                    f"{type(exc).__name__}: {exc}") from None

    def _key(self, document: SourceDocument) -> str:
        prefix = f"{self.source}:"
        if not document.doc_id.startswith(prefix):
            raise FileNotFoundError(f"{document.doc_id!r} is not an object of source {self.source!r}")
        return document.doc_id.removeprefix(prefix)


def _error_code(exc: Any) -> tuple[str, int]:
    """(S3 error code, HTTP status) of a botocore ClientError."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), int(status or 0)
