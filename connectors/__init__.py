"""Where documents come from. Each connector meets [Connector][enclave.contracts.Connector]: it lists a
source's items as [SourceDocument][enclave.contracts.SourceDocument]s (identity, version, ACL,
classification) and fetches their bytes on demand.

Usage::

    from enclave.connectors import FilesystemConnector

    connector = FilesystemConnector("handbook", "/srv/handbook", groups=["staff"])
    docs = list(connector.list_documents())
"""

from typing import TYPE_CHECKING

from enclave.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from enclave.connectors.beir import BeirCorpusConnector, DatasetError
    from enclave.connectors.confluence import ConfluenceConnector
    from enclave.connectors.filesystem import FilesystemConnector
    from enclave.connectors.group_map import GroupMappedConnector
    from enclave.connectors.s3 import S3Connector
    from enclave.connectors.sharepoint import SharePointConnector
    from enclave.connectors.squad import SquadConnector, SquadQuestion
    from enclave.connectors.web import WebConnector

__all__ = [
    "BeirCorpusConnector", "ConfluenceConnector", "DatasetError", "FilesystemConnector", "GroupMappedConnector",
    "S3Connector", "SharePointConnector", "SquadConnector", "SquadQuestion", "WebConnector",
]
__getattr__, __dir__ = lazy_exports(globals(), {
    "enclave.connectors.beir": ["BeirCorpusConnector", "DatasetError"],
    "enclave.connectors.confluence": ["ConfluenceConnector"],
    "enclave.connectors.filesystem": ["FilesystemConnector"],
    "enclave.connectors.group_map": ["GroupMappedConnector"],
    "enclave.connectors.s3": ["S3Connector"],
    "enclave.connectors.sharepoint": ["SharePointConnector"],
    "enclave.connectors.squad": ["SquadConnector", "SquadQuestion"],
    "enclave.connectors.web": ["WebConnector"],
})
