"""Where documents come from: connectors list :class:`SourceDocument` items and fetch their bytes lazily."""

from connectors.document import SourceDocument
from connectors.filesystem import FilesystemConnector

__all__ = ["FilesystemConnector", "SourceDocument"]
