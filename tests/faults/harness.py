"""Nodes of a simulated LAN that the fault tests can kill, restart, cut off and starve.

Each node is a real daemon (tests/faults/node_process.py) in its own namespace, listening
on its LAN address with the test preset's timings, paired with the others offline and told
their addresses (no mDNS: the faults here are about lending, not finding peers). Polls go
to the daemons' control sockets from the test process (a CLI run costs half a second of
CPU, which would slow the nodes being tested)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import xxhash

from mesh.config import Settings
from mesh.core.chunks import CHUNK_SIZE
from mesh.core.ids import NodeId
from mesh.core.paths import folder_owner
from mesh.core.status import LoanLine
from mesh.fs.borrowed import STAGING
from mesh.home import Home
from mesh.node.local import LocalNode
from mesh.security import identity
from tests.faults.node_process import DIED
from tests.lan.daemon import DaemonProcess, until
from tests.lan.netns import REQUIRE_ENV, Lan, NetNode
from tests.node.conftest import NodeHandle, mesh_of

T = TypeVar("T")
PORT = 6374
MB = 1000 * 1000
REPO = Path(__file__).resolve().parents[2]
# Dead-link detection: a keepalive ping every KEEPALIVE_S, unanswered for PING_TIMEOUT_S.
KEEPALIVE_S = 1.0
PING_TIMEOUT_S = 1.0
KEEPALIVE_WINDOW_S = KEEPALIVE_S + PING_TIMEOUT_S


def write_file(path: Path, size: int) -> str:
    """A file of `size` bytes whose 1 MiB chunks all differ (one random MiB, each copy
    stamped with its number), written quickly; its xxh3-128 hex digest."""
    block = bytearray(os.urandom(CHUNK_SIZE))
    digest = xxhash.xxh3_128()
    with path.open("wb") as out:
        written, n = 0, 0
        while written < size:
            block[:8] = n.to_bytes(8, "big")
            piece = memoryview(block)[: size - written]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
            n += 1
    return digest.hexdigest()


def file_hash(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with path.open("rb") as f:
        while piece := f.read(8 * CHUNK_SIZE):
            digest.update(piece)
    return digest.hexdigest()


class FaultNode(DaemonProcess):
    """One computer of the LAN: a namespace, a home, a borrowed folder, its daemon."""

    def __init__(self, host: NetNode, tmp: Path, name: str) -> None:
        self.host = host
        self.name = name
        self.home = Home.resolve(tmp / name)
        self.borrowed = tmp / f"{name}-borrowed"
        self.log = tmp / f"{name}.log"
        self.settings: dict[str, Any] = {
            "listen": host.ip,
            "port": PORT,
            "keepalive_s": KEEPALIVE_S,
            "ping_timeout_s": PING_TIMEOUT_S,
            "log_level": "info",
        }
        self.hooks: list[str] = []  # node_process options for every start
        self.proc: subprocess.Popen[str] | None = None
        LocalNode.init(self.home, name)[0].close()

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{PORT}"

    def handle(self) -> NodeHandle:
        return NodeHandle(home=self.home, name=self.name, settings=Settings.for_tests())

    def start(self, *hooks: str) -> None:
        """Start the daemon without waiting for it; `hooks`: node_process's --die-* options."""
        assert self.proc is None or self.proc.poll() is not None
        fields = {**self.settings, "borrowed_folder": str(self.borrowed)}
        argv = [
            sys.executable,
            "-m",
            "tests.faults.node_process",
            str(self.home.root),
            json.dumps(fields),
        ]
        argv += [*self.hooks, *hooks]
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        with self.log.open("a") as log:
            log.write(f"--- started {' '.join(hooks)}\n")
            log.flush()
            self.proc = self.host.popen(
                argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True
            )

    def control_socket(self) -> Path:
        return self.home.control_socket

    def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup, nothing flushed that was not already."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(15)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(15) == 0, self.log.read_text()

    def died(self, timeout: float = 60) -> None:
        """Wait for a daemon started with a hook to stop itself there."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        assert code == DIED, f"{self.name} exited with {code}:\n{self.log.read_text()}"

    def loan(self, loan_id: str) -> LoanLine | None:
        with self.control() as control:
            found = [line for line in control.loans() if line.id == loan_id]
        return found[0] if found else None

    def phase(self, loan_id: str) -> str:
        line = self.loan(loan_id)
        return line.phase if line is not None else ""

    def online(self) -> set[str]:
        with self.control() as control:
            _, views = control.members()
        return {v.name for v in views if v.online and not v.is_self}

    def share(self, folder: Path, name: str) -> None:
        with self.control() as control:
            control.share(str(folder), name)
            control.scan([name])

    def lend(self, path: str, to: str) -> str:
        with self.control() as control:
            return control.lend(path, to, 0).id

    def tx_bytes(self) -> int:
        """Bytes this node has sent on the LAN (its eth0's counter)."""
        out = self.host.run(["ip", "-s", "-j", "link", "show", "dev", self.host.iface]).stdout
        return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])

    @property
    def node_id(self) -> NodeId:
        cert = identity.pem_to_der(self.home.cert_file.read_bytes())
        return NodeId.of_certificate(cert)

    def copy(self, library: str, path: str, lender: str) -> Path:
        return self.borrowed / lender / library / path

    def staged(self) -> list[str]:
        staging = self.borrowed / STAGING
        return sorted(os.listdir(staging)) if staging.exists() else []


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` ("64m") mounted on the folder `where` (made if missing); the test
    is skipped where mounting is not allowed, and fails there under MESH_REQUIRE_NETNS=1
    (CI, where the namespaces need the same privileges)."""
    where.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        why = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {why}", pytrace=False)
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=True)


def fault_mesh(
    lan: Lan,
    tmp: Path,
    names: Sequence[str],
    settings: dict[str, dict[str, Any]] | None = None,
    hooks: Sequence[str] = (),
) -> list[FaultNode]:
    """Nodes named `names`, one per node of `lan`, in one mesh, each dialling the others;
    their daemons are started and running. `settings`: Settings fields by node name;
    `hooks`: node_process options every node starts with."""
    nodes = [FaultNode(host, tmp, name) for host, name in zip(lan.nodes, names, strict=True)]
    for node in nodes:
        node.settings.update((settings or {}).get(node.name, {}))
        node.hooks = list(hooks)
    mesh_of(nodes[0].handle(), *(n.handle() for n in nodes[1:]))
    _NAMES.clear()
    _NAMES.update((n.node_id, n.name) for n in nodes)
    for node in nodes:
        node.settings["static_peers"] = [o.address for o in nodes if o is not node]
        node.start()
    for node in nodes:
        until(f"{node.name} to run", node.running, 20)
    for node in nodes:
        others = {o.name for o in nodes if o is not node}
        until(f"{node.name} to reach the others", lambda n=node, o=others: n.online() == o, 20)
    return nodes


def settled(lender: FaultNode, borrower: FaultNode, loan: str, copy: Path, digest: str) -> None:
    """After a fault: the borrower holds the verified copy, nothing is left in its staging
    folder, and both ledgers say the same, live (neither side silent)."""
    until("the borrower to hold it", lambda: borrower.phase(loan) == "held", 60)
    assert file_hash(copy) == digest
    until("the staging folder to empty", lambda: borrower.staged() == [], 2)
    agree(lender, borrower, loan, "held")


def agree(lender: FaultNode, borrower: FaultNode, loan: str, phase: str) -> None:
    """Both ledgers show `phase` for the loan (with the same progress), neither stale."""

    def same() -> bool:
        a, b = lender.loan(loan), borrower.loan(loan)
        return (
            a is not None
            and b is not None
            and a.phase == b.phase == phase
            and a.bytes_done == b.bytes_done
            and not a.silent_since_ms
            and not b.silent_since_ms
        )

    until(f"both ledgers to say {phase}", same, 10)


def dump_logs(nodes: Sequence[FaultNode]) -> None:
    """Print the daemons' logs (pytest shows them when the test failed)."""
    for node in nodes:
        if node.log.exists():
            print(f"--- {node.name}'s log\n{node.log.read_text()}")


def _as_named(rel: str) -> str:
    """A path under a lender folder (named by node id) as the user sees it, under the
    lender's name: the fault nodes' certificates are where `FaultNode.node_id` reads them."""
    first, _, rest = rel.partition("/")
    owner = folder_owner(first)
    name = _NAMES.get(owner) if owner is not None else None
    return f"{name}/{rest}" if name is not None else rel


_NAMES: dict[NodeId, str] = {}  # filled by FaultNode: the nodes of the running test


class PartialWatcher:
    """Watches a borrowed folder from a thread for as long as it runs: every file it ever
    sees outside the staging folder must be whole (its expected size) and read-only, and,
    where `versions` names them, have one of those contents (xxh3-128 hex digests)."""

    def __init__(
        self,
        root: Path,
        sizes: dict[str, int | set[int]],
        versions: dict[str, set[str]] | None = None,
    ) -> None:
        self.root = root
        self.sizes = sizes  # relative path -> size of the whole file (or of each version)
        self.versions = versions or {}
        self.seen: set[str] = set()
        self.wrong: list[str] = []
        self._checked: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="partial-watcher", daemon=True)

    def __enter__(self) -> PartialWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            for folder, dirs, files in os.walk(self.root):
                if STAGING in dirs:
                    dirs.remove(STAGING)
                for name in files:
                    path = Path(folder) / name
                    rel = _as_named(path.relative_to(self.root).as_posix())
                    try:
                        self._look(path, rel)
                    except FileNotFoundError:
                        continue

    def _look(self, path: Path, rel: str) -> None:
        st = path.stat()
        self.seen.add(rel)
        sizes = self.sizes.get(rel)
        allowed_sizes = sizes if isinstance(sizes, set) else {sizes}
        if st.st_size not in allowed_sizes or st.st_mode & stat.S_IWUSR:
            self.wrong.append(f"{rel}: {st.st_size} bytes, mode {st.st_mode:o}")
            return
        allowed = self.versions.get(rel)
        if allowed is not None and (st.st_ino, st.st_mtime_ns) not in self._checked:
            self._checked.add((st.st_ino, st.st_mtime_ns))
            digest = file_hash(path)
            if digest not in allowed:
                self.wrong.append(f"{rel}: content {digest} is none of the versions lent")
