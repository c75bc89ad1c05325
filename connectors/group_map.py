"""Renaming the groups a source grants to the groups Enclave's principals carry."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from enclave.contracts import Connector, SourceDocument, StatefulConnector


class GroupMappedConnector:
    """A [Connector][enclave.contracts.Connector] whose documents' groups are renamed by ``mapping``.

    Usage::

        connector = GroupMappedConnector(S3Connector("wiki", "wiki-export"),
                                         {"confluence-users": "staff", "4f1c...": "finance"})
        [doc.groups for doc in connector.list_documents()]     # [("staff",), ("finance", "audit"), ...]

    A source names its readers in its own terms (an LDAP group, a Confluence group, an Entra group id);
    ``mapping`` takes each to an Enclave group (the groups an API key or a signed-in user carries). A
    group the mapping does not name is kept as it is. ``source`` and ``fetch`` are the inner connector's.
    """

    def __init__(self, inner: Connector, mapping: Mapping[str, str]) -> None:
        self.inner = inner
        self.source = inner.source
        self.mapping = dict(mapping)

    def list_documents(self) -> Iterator[SourceDocument]:
        """The inner connector's documents, with their groups renamed (duplicates dropped, order kept)."""
        for doc in self.inner.list_documents():
            yield replace(doc, groups=tuple(dict.fromkeys(self.mapping.get(g, g) for g in doc.groups)))

    def fetch(self, document: SourceDocument) -> bytes:
        """The inner connector's bytes of ``document``."""
        return self.inner.fetch(document)

    def restore(self, state: dict[str, Any]) -> None:
        """The inner connector's, when it keeps state between listings."""
        if isinstance(self.inner, StatefulConnector):
            self.inner.restore(state)

    def state(self) -> dict[str, Any]:
        """The inner connector's state ({} when it keeps none)."""
        return self.inner.state() if isinstance(self.inner, StatefulConnector) else {}
