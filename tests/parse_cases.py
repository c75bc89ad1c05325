"""What the parse tests share (tests/indexes/test_ocr.py, test_office_conversion.py): a SourceDocument for
some bytes, and the processes a killed parse worker left behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from enclave.contracts import SourceDocument


def source_doc(name: str, data: bytes) -> SourceDocument:
    """``data`` as the file ``name`` of a source ``docs`` (groups ``staff``, internal), its type from the name."""
    return SourceDocument(doc_id=f"docs:{name}", source="docs", uri=f"file:///srv/docs/{name}",
                          title=Path(name).stem, version="1", size=len(data), groups=("staff",),
                          classification="internal", extension=Path(name).suffix.lower())


def survivors(group: int) -> list[str]:
    """``ps`` lines (pid, pgid, state, command) of the live processes of process group ``group``, after
    half a second: a killed process may linger a moment as a zombie (state Z) until it is reaped."""
    time.sleep(0.5)
    table = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,comm="], capture_output=True, text=True, check=True).stdout
    return [line for line in table.splitlines() if line.split()[1] == str(group) and not line.split()[2].startswith("Z")]
