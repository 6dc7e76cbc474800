"""Generated protobuf and gRPC code for proto/mesh/v1 (run proto/generate.py; do not edit)."""
