"""gRPC servicers and clients: thin adapters between the wire and the node."""

import os

# gRPC's C core logs every refused handshake to stderr; mesh logs what matters itself.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
