"""Fetch benchmark: one file lent between two `mesh up` processes over mutual TLS on
127.0.0.1, against baselines measured in the same run, interleaved round by round.

    python -m tests.bench.bench_fetch [--size 1GiB] [--rounds 3] [--quick]

  mesh      `mesh lend FILE --to laptop` on the tower; the time until the laptop's daemon
            logs that it holds the copy (every chunk verified, the whole file hashed again,
            fsynced and renamed into place).
  rsync     an rsync daemon on 127.0.0.1 serving the file, pulled with `rsync --whole-file
            --fsync` (Debian's rsync, installed if missing).
  sendfile  raw TCP: `socket.sendfile` on one side, `recv_into` and write on the other,
            then fsync. The ceiling of this machine's loopback and disk.
  grpc      a stock `grpc.aio` server stream over mutual TLS (EC P-256 both ways), 1 MiB
            protobuf messages, written to a file and fsynced: what gRPC gives with no tuning.

Each baseline runs in fresh processes with the default allocator. Also measured:
  resume    the laptop's daemon SIGKILLed when half the file is verified and started again:
            the time from its restart (and from it answering the CLI) until it holds the
            copy, against a full pull. Target <= 0.6x.
  latency   during one more pull (not one of the timed rounds), both daemons answer the
            control calls behind `mesh loans` and `mesh status` every 50 ms: the slowest
            answer. Target <= 100 ms.
Targets: mesh >= 0.7x rsync and >= 1.6x grpc. Medians over the rounds, (min-max) after.
`--quick` is a smoke run (64 MiB, one round) that checks the machinery end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mesh.config import parse_size
from mesh.home import Home
from mesh.security import identity as ident
from mesh.transport.control_client import ControlClient
from tests.faults.harness import write_file

MiB = 1 << 20
CODE = re.compile(r"mesh join (\S+) --at (\S+)")


# -- the mesh side -------------------------------------------------------------------------


class Node:
    """A home and its `mesh up` process, whose log lines are kept with their times."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.home = root / name
        self.borrowed = root / f"{name}-borrowed"
        self.env = {**os.environ, "MESH_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[tuple[float, str]] = []
        self.mesh("init", "--name", name)
        self.mesh("config", "set", "borrowing.folder", str(self.borrowed))
        self.mesh("config", "set", "borrowing.reserve", "0")

    def mesh(self, *args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "mesh", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mesh {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def up(self) -> float:
        """Start the daemon; the time it took until it answers the CLI."""
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mesh",
                "up",
                "--no-mdns",
                "--listen",
                "127.0.0.1",
                "--port",
                "0",
                *os.environ.get("MESH_BENCH_UP_ARGS", "").split(),
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        while True:
            client = self.client()
            try:
                client.loans()
                return time.monotonic() - began
            except Exception:  # not up yet
                if self.proc.poll() is not None or time.monotonic() - began > 30:
                    raise RuntimeError(
                        f"{self.name}'s daemon did not start: {self.tail()}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def client(self) -> ControlClient:
        return ControlClient(Home.resolve(self.home).control_socket)

    def wait_log(self, pattern: str, since: float, timeout: float = 600) -> float:
        """When a log line matching `pattern` appeared after `since`."""
        found = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if at >= since and found.search(line):
                    return at
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}'s daemon exited: {self.tail()}")
            time.sleep(0.01)
        raise RuntimeError(f"no {pattern!r} in {self.name}'s log: {self.tail()}")

    def tail(self) -> str:
        return "\n".join(line for _, line in self.lines[-15:])

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Responsiveness:
    """Control calls to the daemons every 50 ms while a transfer runs; the slowest."""

    def __init__(self, nodes: list[Node]) -> None:
        self._nodes = nodes
        self._stop = threading.Event()
        self.worst = 0.0
        self.calls = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Responsiveness:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        clients = [n.client() for n in self._nodes]
        try:
            while not self._stop.wait(0.05):
                for client in clients:
                    for call in (client.loans, client.status):  # `mesh loans`, `mesh status`
                        began = time.monotonic()
                        call()
                        self.worst = max(self.worst, time.monotonic() - began)
                        self.calls += 1
        finally:
            for client in clients:
                client.close()


class MeshPair:
    def __init__(self, root: Path, library: Path) -> None:
        self.tower, self.laptop = Node(root, "tower"), Node(root, "laptop")
        self.library = library
        self.tower.up()
        self.laptop.up()
        found = CODE.search(self.tower.mesh("invite"))
        assert found, "no invite code"
        self.laptop.mesh("join", found.group(1), "--at", found.group(2))
        self.tower.mesh("share", str(library), "--as", "Bench")
        self.worst_latency = 0.0
        self.watch = False  # probe the daemons' answers during pulls (costs them CPU)

    def copy_of(self, file: Path) -> Path:
        return self.laptop.borrowed / "tower" / "Bench" / file.name

    def lend(self, file: Path) -> tuple[str, float]:
        began = time.monotonic()
        out = self.tower.mesh("lend", str(file), "--to", "laptop")
        found = re.search(r"loan (\w+)", out)
        assert found, out
        return found.group(1), began

    def recall(self, loan: str, file: Path) -> None:
        self.tower.mesh("recall", loan)
        deadline = time.monotonic() + 60
        while self.copy_of(file).exists():
            assert time.monotonic() < deadline, "the recalled copy stayed"
            time.sleep(0.05)

    def pull(self, file: Path) -> float:
        with Responsiveness([self.tower, self.laptop] if self.watch else []) as calls:
            loan, began = self.lend(file)
            done = self.laptop.wait_log(rf"holding Bench/{re.escape(file.name)}", began)
        self.worst_latency = max(self.worst_latency, calls.worst)
        self.recall(loan, file)
        return done - began

    def resume(self, file: Path, size: int) -> tuple[float, float] | None:
        """Kill the borrower at half; (from restart, from answering) until it holds, or
        None if the pull finished before half of it could be seen."""
        loan, _ = self.lend(file)
        client = self.laptop.client()
        try:
            deadline = time.monotonic() + 300
            while True:
                lines = [x for x in client.loans() if x.id == loan]
                if lines and lines[0].bytes_done >= size // 2:
                    break
                assert time.monotonic() < deadline, "the pull never got half way"
                time.sleep(0.01)
        finally:
            client.close()
        self.laptop.stop(signal.SIGKILL)
        if self.copy_of(file).exists():
            self.laptop.up()
            self.recall(loan, file)
            return None
        restarted = time.monotonic()
        booted = self.laptop.up()
        done = self.laptop.wait_log(rf"holding Bench/{re.escape(file.name)}", restarted)
        self.recall(loan, file)
        return done - restarted, done - restarted - booted

    def close(self) -> None:
        self.laptop.stop()
        self.tower.stop()


# -- baselines -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_rsync() -> str:
    found = shutil.which("rsync")
    if found:
        return found
    print("installing rsync from the distribution's packages", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "rsync"], check=True, capture_output=True)
    found = shutil.which("rsync")
    assert found, "rsync did not install"
    return found


class Rsync:
    def __init__(self, root: Path, library: Path) -> None:
        self.rsync = ensure_rsync()
        self.port = free_port()
        conf = root / "rsyncd.conf"
        conf.write_text(
            f"use chroot = no\n[bench]\npath = {library}\nread only = yes\nuid = root\n"
        )
        self.proc = subprocess.Popen(
            [
                self.rsync,
                "--daemon",
                "--no-detach",
                f"--config={conf}",
                f"--port={self.port}",
                "--address=127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def pull(self, file: Path, out: Path) -> float:
        began = time.monotonic()
        subprocess.run(
            [
                self.rsync,
                "--whole-file",
                "--fsync",
                "-q",
                f"rsync://127.0.0.1:{self.port}/bench/{file.name}",
                str(out),
            ],
            check=True,
        )
        return time.monotonic() - began

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.05)


def run_role(args: list[str]) -> float:
    """Run one side of a baseline in a fresh process (this module with --role)."""
    began = time.monotonic()
    subprocess.run([sys.executable, "-m", "tests.bench.bench_fetch", "--role", *args], check=True)
    return time.monotonic() - began


class Server:
    """A baseline's serving side, in its own process, for the whole run."""

    def __init__(self, role: str, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.bench_fetch",
                "--role",
                role,
                str(self.port),
                *args,
            ],
            cwd=Path(__file__).resolve().parents[2],
        )
        wait_port(self.port)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def sendfile_server(port: int, file: str) -> None:
    with socket.create_server(("127.0.0.1", port)) as listener:
        while True:
            conn, _ = listener.accept()
            with conn, open(file, "rb") as f, contextlib.suppress(OSError):
                conn.sendfile(f)  # (the readiness probe hangs up at once)


def sendfile_client(port: int, out: str) -> None:
    buf = bytearray(MiB)
    view = memoryview(buf)
    with socket.create_connection(("127.0.0.1", port)) as conn, open(out, "wb") as f:
        while n := conn.recv_into(buf):
            f.write(view[:n])
        f.flush()
        os.fsync(f.fileno())


def _certs(root: Path) -> None:
    for side in ("server", "client"):
        who = ident.generate()
        (root / f"{side}.key").write_bytes(who.key_pem)
        (root / f"{side}.crt").write_bytes(who.cert_pem)


def grpc_server(port: int, file: str, certs: str) -> None:
    import asyncio

    import grpc
    from google.protobuf import wrappers_pb2

    root = Path(certs)

    async def stream(request: object, context: object) -> object:
        with open(file, "rb") as f:  # noqa: ASYNC230 - as a stock server would
            while data := f.read(MiB):
                yield wrappers_pb2.BytesValue(value=data)

    async def serve() -> None:
        server = grpc.aio.server(
            options=[("grpc.max_send_message_length", 8 * MiB), ("grpc.so_reuseport", 0)]
        )
        handler = grpc.method_handlers_generic_handler(
            "bench.File",
            {
                "Get": grpc.unary_stream_rpc_method_handler(
                    stream,
                    request_deserializer=wrappers_pb2.BytesValue.FromString,
                    response_serializer=wrappers_pb2.BytesValue.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        creds = grpc.ssl_server_credentials(
            [((root / "server.key").read_bytes(), (root / "server.crt").read_bytes())],
            root_certificates=(root / "client.crt").read_bytes(),
            require_client_auth=True,
        )
        server.add_secure_port(f"127.0.0.1:{port}", creds)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


def grpc_client(port: int, out: str, certs: str) -> None:
    import asyncio

    import grpc
    from google.protobuf import wrappers_pb2

    root = Path(certs)

    async def pull() -> None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=(root / "server.crt").read_bytes(),
            private_key=(root / "client.key").read_bytes(),
            certificate_chain=(root / "client.crt").read_bytes(),
        )
        async with grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            creds,
            options=[
                ("grpc.ssl_target_name_override", ident.SAN_NAME),
                ("grpc.max_receive_message_length", 8 * MiB),
            ],
        ) as channel:
            call = channel.unary_stream(
                "/bench.File/Get",
                request_serializer=wrappers_pb2.BytesValue.SerializeToString,
                response_deserializer=wrappers_pb2.BytesValue.FromString,
            )
            with open(out, "wb") as f:  # noqa: ASYNC230 - as a stock client would
                async for msg in call(wrappers_pb2.BytesValue()):
                    f.write(msg.value)
                f.flush()
                os.fsync(f.fileno())

    asyncio.run(pull())


ROLES: dict[str, Callable[..., None]] = {
    "sendfile-server": sendfile_server,
    "sendfile-client": sendfile_client,
    "grpc-server": grpc_server,
    "grpc-client": grpc_client,
}


# -- the run -------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.role:
        role, port, *rest = opts.role
        ROLES[role](int(port), *rest)
        return
    size = 64 * MiB if opts.quick else parse_size(opts.size)
    rounds = 1 if opts.quick else opts.rounds
    with tempfile.TemporaryDirectory(prefix="mesh-bench-fetch-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        library = root / "library"
        library.mkdir()
        file = library / "big.bin"
        write_file(file, size)
        _certs(root)
        out = root / "out.bin"
        pair = MeshPair(root, library)
        rsync = Rsync(root, library)
        sender = Server("sendfile-server", str(file))
        streamer = Server("grpc-server", str(file), str(root))
        times: dict[str, list[float]] = {k: [] for k in ("mesh", "rsync", "sendfile", "grpc")}
        runs: dict[str, Callable[[], float]] = {
            "mesh": lambda: pair.pull(file),
            "rsync": lambda: rsync.pull(file, out),
            "sendfile": lambda: run_role(["sendfile-client", str(sender.port), str(out)]),
            "grpc": lambda: run_role(["grpc-client", str(streamer.port), str(out), str(root)]),
        }
        try:
            names = list(runs)
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    times[name].append(runs[name]())
                    out.unlink(missing_ok=True)
                print(
                    f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
                    file=sys.stderr,
                )
            # One more pull, not timed against the others: the probe of the daemons' answers
            # costs them CPU the baselines would not pay.
            pair.watch = True
            pair.pull(file)
            pair.watch = False
            resume = pair.resume(file, size)
        finally:
            pair.close()
            rsync.close()
            sender.close()
            streamer.close()
    gb = size / 1e9
    mesh_t = times["mesh"]
    print(f"fetch benchmark: {size / MiB:.0f} MiB, {rounds} round(s), 127.0.0.1, mutual TLS")
    for name, values in times.items():
        rates = [gb / t for t in values]
        print(f"  {name:9} {spread(values)} s   {spread(rates)} GB/s")
    for base, target in (("rsync", 0.7), ("grpc", 1.6)):
        ratios = [b / m for m, b in zip(mesh_t, times[base], strict=True)]
        print(f"  mesh vs {base:8} {spread(ratios)}x   (target >= {target}x)")
    ratios = [b / m for m, b in zip(mesh_t, times["sendfile"], strict=True)]
    print(f"  mesh vs sendfile {spread(ratios)}x   (the machine's ceiling)")
    full = statistics.median(mesh_t)
    if resume is None:
        print("  resume at 50%: the pull ended before half of it could be seen; no figure")
    else:
        resumed, after_boot = resume
        print(
            f"  resume at 50%: {resumed:.2f} s from the restart = {resumed / full:.2f}x a full "
            f"pull; {after_boot:.2f} s = {after_boot / full:.2f}x once it answers "
            "(target <= 0.6x)"
        )
    print(f"  slowest control call during pulls: {pair.worst_latency * 1000:.0f} ms (<= 100)")


if __name__ == "__main__":
    main()
