"""``python -m enclave``: the ``enclave`` command."""

from enclave.cli import app

app(prog_name="enclave")
