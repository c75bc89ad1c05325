"""Prefect flows composing the stages: ``ingest`` and ``answer``; the answer pipeline the server calls."""
