"""The `tokenry` operator command."""

import os

# grpc core logs each failed TLS handshake on stderr at INFO level, several lines a call; the CLI
# reports every failure in one line of its own (docs/spec.md §6), so only grpc's errors pass.
# Set before grpc loads (the CLI's modules import it); an explicit GRPC_VERBOSITY wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
