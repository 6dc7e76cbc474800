"""Start-up benchmark: how soon `mesh up` answers on its control socket, and how long
`mesh invite` takes, each as a user runs it (a fresh `python -m mesh` process).

    python -m tests.bench.bench_start [--rounds 7] [--quick]

  (a) up      from spawning `mesh up` until its control socket takes a connection (what
              the CLI's ping checks; a fresh connection tried every 2 ms once the socket
              exists). Target <= 0.3 s. Then, for reference, until a Status call answers
              (calls made while the daemon is still being built wait for it).
  (b) invite  wall time of `mesh invite` against that running daemon (mDNS off, so the
              invitation is not announced). Target <= 0.5 s.
  baseline    wall time of `python -c pass` in the same run: the interpreter's own start.

Medians over the rounds; the spread (min-max) follows in brackets. `--quick` is a smoke
run (two rounds) that checks the machinery; its figures are not the targets'.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mesh.home import Home
from mesh.v1 import control_pb2, control_pb2_grpc

UP_TARGET_S = 0.3
INVITE_TARGET_S = 0.5


def mesh(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mesh", "--home", str(home), *args]


def env() -> dict[str, str]:
    return {**os.environ, "GRPC_VERBOSITY": "ERROR"}


# Each try its own subchannel: gRPC otherwise shares one per target across channels, with
# its reconnect backoff (a second), and a try before the socket listened would delay all.
_FRESH = [("grpc.use_local_subchannel_pool", 1)]


def connects(socket: Path) -> float | None:
    """When (monotonic) the control socket took a connection, which is what the CLI's
    ping waits for; None if it did not. (Taken before the channel closes: closing one
    that waited for readiness waits for gRPC's connectivity poller, up to 0.2 s.)"""
    with grpc.insecure_channel(f"unix:{socket}", options=_FRESH) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=5 if socket.exists() else 0.01)
        except grpc.FutureTimeoutError:
            return None
        return time.monotonic()


def status(socket: Path) -> None:
    """A Status call, waited out (it waits for the daemon's handlers while it starts)."""
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        control_pb2_grpc.ControlStub(channel).Status(control_pb2.StatusRequest(), timeout=30)


def up_once(home: Path) -> tuple[float, float, subprocess.Popen[bytes]]:
    """(seconds until the socket took a connection, until a Status call answered, the
    process)."""
    socket = Home.resolve(home).control_socket
    started = time.monotonic()
    proc = subprocess.Popen(
        mesh(home, "up", "--no-mdns", "--listen", "127.0.0.1", "--port", "0"),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = started + 30
    while (ready := connects(socket) if socket.exists() else None) is None:
        if proc.poll() is not None:
            raise RuntimeError(f"mesh up exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("mesh up never answered")
        time.sleep(0.002)
    ping = ready - started
    status(socket)
    return ping, time.monotonic() - started, proc


def timed(cmd: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(cmd, env=env(), check=True, capture_output=True)
    return time.monotonic() - started


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spread(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):6.0f} ms [{min(ms):.0f}-{max(ms):.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a smoke run: two rounds")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    ups: list[float] = []
    statuses: list[float] = []
    invites: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        home = Path(tmp) / "node"
        # gRPC starts its own threads on a process's first channel: not in the first round.
        connects(Path(tmp) / "nothing.sock")
        subprocess.run(
            mesh(home, "init", "--name", "bench"), env=env(), check=True, capture_output=True
        )
        for _ in range(rounds):
            bare.append(timed([sys.executable, "-c", "pass"]))
            ping, answered, proc = up_once(home)
            ups.append(ping)
            statuses.append(answered)
            try:
                invites.append(timed(mesh(home, "invite")))
            finally:
                stop(proc)
    up, invite = statistics.median(ups), statistics.median(invites)
    print(f"start-up, {rounds} rounds (medians, spread in brackets)")
    print(
        f"    mesh up answers   {spread(ups)}   target <= {UP_TARGET_S * 1000:.0f} ms: "
        f"{'ok' if up <= UP_TARGET_S else 'MISSED'}"
    )
    print(f"    first status      {spread(statuses)}   (the daemon built and serving)")
    print(
        f"    mesh invite       {spread(invites)}   target <= {INVITE_TARGET_S * 1000:.0f} ms: "
        f"{'ok' if invite <= INVITE_TARGET_S else 'MISSED'}"
    )
    print(f"    baseline          {spread(bare)}   `python -c pass`, the interpreter alone")


if __name__ == "__main__":
    main()
