"""The `mesh` command line.

gRPC's C core logs its own errors straight to stderr (`E1207 ... add_port.cc:83] Failed to
add port ...`), ahead of the one line mesh prints about the same failure. Every path into the
command (the `mesh` script, `python -m mesh`) imports this package before gRPC is loaded, so
the core is told to keep quiet here; `GRPC_VERBOSITY=error mesh ...` shows its lines again.
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
