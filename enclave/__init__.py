"""Enclave: RAG workflow orchestration for documents that must stay inside your walls.

The stage packages (connectors, indexes, prompts, llms, flows, server) are importable on their
own; this package holds the settings, the CLI and the version.
"""

__version__ = "0.1.0"
