"""The committed generated code is what proto/ produces today (regenerate: proto/generate.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load_generator() -> object:
    spec = importlib.util.spec_from_file_location("proto_generate", REPO / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["proto_generate"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generator = _load_generator()
    written = generator.generate(tmp_path)  # type: ignore[attr-defined]
    assert written, "protoc wrote nothing"
    committed_dir = REPO / "mesh" / "v1"
    stale = []
    for fresh in written:
        committed = committed_dir / fresh.name
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            stale.append(fresh.name)
    extra = {
        p.name
        for p in committed_dir.iterdir()
        if p.name.endswith((".py", ".pyi")) and p.name != "__init__.py"
    } - {p.name for p in written}
    assert not stale, f"stale generated code, run `python proto/generate.py`: {stale}"
    assert not extra, f"generated files without a .proto: {sorted(extra)}"
