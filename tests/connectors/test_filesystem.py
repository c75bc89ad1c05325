"""connectors.filesystem: listing, globs, hidden files, identity, versions and lazy fetch."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from enclave.connectors import FilesystemConnector
from enclave.contracts import Connector, SourceDocument


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    return _tree(
        tmp_path / "handbook",
        {
            "readme.md": b"# Readme\n",
            "b.txt": b"bee",
            "a.pdf": b"%PDF-1.4 fake",
            "leave/policy.md": b"# Leave\n",
            "leave/drafts/new.md": b"# Draft\n",
            "leave/zz/deep/notes.txt": b"deep",
            ".hidden.md": b"secret",
            ".git/config": b"[core]",
            "visible/.cache/x.md": b"cached",
        },
    )


def _rels(connector: FilesystemConnector) -> list[str]:
    return [doc.doc_id.split(":", 1)[1] for doc in connector.list_documents()]


def test_lists_recursively_in_sorted_order_and_skips_hidden(handbook: Path) -> None:
    rels = _rels(FilesystemConnector("hb", handbook))
    assert rels == ["a.pdf", "b.txt", "leave/drafts/new.md", "leave/policy.md", "leave/zz/deep/notes.txt", "readme.md"]
    assert not any(part.startswith(".") for rel in rels for part in rel.split("/"))


def test_include_globs(handbook: Path) -> None:
    assert _rels(FilesystemConnector("hb", handbook, include=["*.md"])) == [
        "leave/drafts/new.md", "leave/policy.md", "readme.md",  # fnmatch's * crosses folders
    ]
    # "**/" also matches no folder at all: top-level files are included
    assert _rels(FilesystemConnector("hb", handbook, include=["**/*.txt"])) == ["b.txt", "leave/zz/deep/notes.txt"]
    assert _rels(FilesystemConnector("hb", handbook, include=["leave/*"])) == [
        "leave/drafts/new.md", "leave/policy.md", "leave/zz/deep/notes.txt",
    ]
    assert _rels(FilesystemConnector("hb", handbook, include=["*.pdf", "readme.md"])) == ["a.pdf", "readme.md"]


def test_exclude_globs(handbook: Path) -> None:
    assert _rels(FilesystemConnector("hb", handbook, exclude=["**/drafts/**"])) == [
        "a.pdf", "b.txt", "leave/policy.md", "leave/zz/deep/notes.txt", "readme.md",
    ]
    # a "**/" exclude pattern also matches a top-level file
    assert _rels(FilesystemConnector("hb", handbook, exclude=["**/readme.md"])) == [
        "a.pdf", "b.txt", "leave/drafts/new.md", "leave/policy.md", "leave/zz/deep/notes.txt",
    ]
    assert _rels(FilesystemConnector("hb", handbook, include=["**/*.md"], exclude=["leave/**"])) == ["readme.md"]


def test_document_identity_and_labels(handbook: Path) -> None:
    connector = FilesystemConnector("hb", handbook, groups=["hr", "staff"], classification="confidential")
    docs = {doc.doc_id: doc for doc in connector.list_documents()}
    doc = docs["hb:leave/policy.md"]
    assert isinstance(doc, SourceDocument)
    assert doc.source == "hb"
    assert doc.title == "policy.md"
    assert doc.extension == ".md"
    assert doc.uri == (handbook / "leave" / "policy.md").resolve().as_uri()
    assert doc.size == len(b"# Leave\n")
    assert doc.groups == ("hr", "staff")
    assert doc.classification == "confidential"
    assert all(d.groups == ("hr", "staff") and d.classification == "confidential" for d in docs.values())


def test_default_groups_and_classification(handbook: Path) -> None:
    doc = next(iter(FilesystemConnector("hb", handbook).list_documents()))
    assert doc.groups == ("everyone",)
    assert doc.classification == "internal"


def test_doc_id_is_stable_across_runs_and_root_spellings(handbook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = [d.doc_id for d in FilesystemConnector("hb", handbook).list_documents()]
    monkeypatch.chdir(handbook.parent)
    second = [d.doc_id for d in FilesystemConnector("hb", Path("handbook")).list_documents()]
    assert first == second
    assert "hb:leave/zz/deep/notes.txt" in first


def test_version_changes_when_file_changes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src", {"doc.txt": b"short"})
    [before] = FilesystemConnector("s", root).list_documents()
    [same] = FilesystemConnector("s", root).list_documents()
    assert same.version == before.version
    (root / "doc.txt").write_bytes(b"a much longer content than before")
    [after] = FilesystemConnector("s", root).list_documents()
    assert after.doc_id == before.doc_id
    assert after.version != before.version
    assert after.size == len(b"a much longer content than before")
    stat = (root / "doc.txt").stat()
    assert after.version == f"{stat.st_mtime_ns}-{stat.st_size}"


def test_version_changes_with_mtime_alone(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src", {"doc.txt": b"12345"})
    [before] = FilesystemConnector("s", root).list_documents()
    os.utime(root / "doc.txt", ns=(1_000_000_000, 1_000_000_000))
    [after] = FilesystemConnector("s", root).list_documents()
    assert after.version == "1000000000-5" and after.version != before.version


def test_fetch_is_lazy_and_returns_bytes(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src", {"doc.bin": b"\x00\x01first"})
    connector = FilesystemConnector("s", root)
    [doc] = connector.list_documents()
    # listing did not read the content: a change before fetch() is what fetch() returns
    (root / "doc.bin").write_bytes(b"\x00\x01second")
    assert connector.fetch(doc) == b"\x00\x01second"
    assert isinstance(connector.fetch(doc), bytes)
    (root / "doc.bin").unlink()
    with pytest.raises(OSError):
        connector.fetch(doc)


def test_fetch_reads_only_files_of_its_own_folder(tmp_path: Path) -> None:
    root = _tree(tmp_path / "src", {"a.md": b"# A"})
    (tmp_path / "secret.txt").write_bytes(b"outside")
    connector = FilesystemConnector("s", root)
    [doc] = connector.list_documents()
    for doc_id in ("s:../secret.txt", "other:a.md"):
        with pytest.raises(FileNotFoundError):
            connector.fetch(replace(doc, doc_id=doc_id))


def test_the_connector_meets_the_connector_protocol(tmp_path: Path) -> None:
    connector: Connector = FilesystemConnector("s", _tree(tmp_path / "src", {"a.md": b"# A"}))
    [doc] = connector.list_documents()
    assert (connector.source, doc.source, doc.doc_id) == ("s", "s", "s:a.md")


def test_content_hash_is_sha256() -> None:
    assert SourceDocument.content_hash(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_empty_folder_yields_nothing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert list(FilesystemConnector("s", tmp_path / "empty").list_documents()) == []


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        list(FilesystemConnector("s", tmp_path / "missing").list_documents())


def test_root_that_is_a_file_raises(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundError):
        list(FilesystemConnector("s", tmp_path / "file.txt").list_documents())
