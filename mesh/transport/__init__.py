"""gRPC servicers and clients: thin adapters between the wire and the node."""
