"""Regenerate the committed Python code for proto/mesh/v1 into mesh/v1 (or into OUT_DIR).

    python proto/generate.py            # rewrite mesh/v1/*_pb2*.py{,i}
    python proto/generate.py OUT_DIR    # write elsewhere (the staleness test does this)

The protoc plugins for the type stubs live beside the interpreter, so this runs them from
there rather than from PATH: the same venv always produces the same bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def generate(out_dir: Path) -> list[Path]:
    """Run protoc over every .proto file; return the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    bindir = Path(sys.executable).parent
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *sources,
    ]
    cwd = os.getcwd()
    os.chdir(PROTO_ROOT)
    try:
        code = protoc.main(args)
    finally:
        os.chdir(cwd)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    return sorted(p for p in (out_dir / "mesh" / "v1").iterdir() if p.name != "__init__.py")


def main() -> None:
    if len(sys.argv) > 1:
        generate(Path(sys.argv[1]))
        return
    for written in generate(REPO_ROOT):
        print(written.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
