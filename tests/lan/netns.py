"""A simulated LAN made of network namespaces, for tests that need several hosts with real
multicast, real TCP and real link failures, without touching the machine's own network.

Layout of one `Lan` (nothing at all is created in the namespace the tests run in)::

    meshlan-<pid>-<k>-br-10.a.b.0    bridge namespace: lo, br0, and one port vI per node
    meshlan-<pid>-<k>-n0 .. nN-1     node namespaces: lo, eth0 = 10.a.b.(I+1)/24,
                                     route 224.0.0.0/4 dev eth0 (for mDNS)

Each node's veth pair is created by a netlink call made in the bridge namespace, with its peer
placed straight into the node namespace and named eth0 there. `<pid>-<k>` (creating process,
per-process counter) keeps concurrent runs apart; the /24 is unique among all the LANs on the
machine (it is claimed through the bridge namespace's name, see `Lan._claim_subnet`).

API
---
`Lan(n=2, *, kill_grace=2.0, rng=None)`: build a LAN of `n` nodes; a context manager.
    Attributes `nodes: list[NetNode]`, `subnet: IPv4Network` (10.a.b.0/24), `name`
    ("meshlan-<pid>-<k>"), `bridge_netns`, `kill_grace`. Methods `add_node(name=None,
    timeout=5.0) -> NetNode` (plug in one more node at the next free address),
    `netns_names() -> list[str]` (bridge first), `wait_ready(timeout=5.0)`, and `close()`:
    stop what runs in the LAN and delete its namespaces; idempotent, and also run by an
    atexit hook so a Ctrl-C in the middle of a test still cleans up.
`NetNode`: attributes `lan`, `name` ("n0", "n1", ..), `ip` (str), `netns`, `port` (its veth
    in the bridge namespace), `iface` ("eth0"), `attached`, `blackholed`, `rate`. Methods:
    `run(cmd, *, check=True, timeout=30.0, **kw) -> CompletedProcess` (text output captured
        unless stdout/stderr are given; `cmd` a list, or a string split like a shell would),
    `popen(cmd, **kw) -> Popen` (tracked: teardown sends SIGTERM, waits `kill_grace`, then
        SIGKILL, by pid), `exec_args(cmd) -> list[str]` (the `ip netns exec` argv),
    `ping(target, timeout=1.0, tool="auto") -> bool` (`ping -n -c1 -W t`, or a stdlib raw
        ICMP echo where no ping binary is installed; target a NetNode or an address),
    `cut()` / `reattach(timeout=5.0)` (bridge-side link down/up: the node loses its carrier),
    `port_ready() -> bool`, `set_address(ip)` (a DHCP change; "10.a.b.c" or with "/len"),
    `limit_rate(rate)` (tc tbf both ways, e.g. "100mbit"; None lifts it), `blackhole()` /
        `heal()` (silently drop everything both ways; the link stays up).
Fixtures (tests/lan/conftest.py): `make_lan` (type `MakeLan`): `lan = make_lan(3)`, closes
    every LAN it made after the test; `stale_lans_removed` (session): runs `cleanup_stale()`
    once. Elsewhere: `from tests.lan.conftest import make_lan, stale_lans_removed` in that
    directory's conftest.py. In tests/lan, `@pytest.mark.netns` itself skips or fails.
`require_netns()`: skip the calling test where namespaces cannot be made, or fail it when
    MESH_REQUIRE_NETNS=1 (CI). `netns_unavailable_reason(probe=True)` says why (None: can);
    `cached_unavailable_reason()` probes once per process.
`cleanup_stale() -> list[str]`: delete namespaces of earlier runs whose process is dead.
`NetnsError`: a namespace command failed. Helpers: `wait_until(condition, timeout, what)`,
    `read_line(proc, timeout)`, `py(code, *args) -> argv`, `list_netns()`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import itertools
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol

import pytest

PREFIX = "meshlan"
REQUIRE_ENV = "MESH_REQUIRE_NETNS"
NETNS_DIR = Path("/run/netns")
BRIDGE = "br0"
IFACE = "eth0"
MCAST_ROUTE = "224.0.0.0/4"

_CAP_NET_ADMIN = 12
_CAP_SYS_ADMIN = 21
_STALE = re.compile(rf"^{PREFIX}-(\d+)-")
_SUBNET_IN_NAME = re.compile(r"-br-(10\.\d{1,3}\.\d{1,3}\.0)$")
_NODE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,24}$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)([kmgt]?)(bit|bps)$", re.IGNORECASE)

_counter = itertools.count()
_live: set[Lan] = set()
_live_lock = threading.Lock()


class NetnsError(RuntimeError):
    """A namespace operation failed (the message holds the command and its stderr)."""


class MakeLan(Protocol):
    """Type of the `make_lan` fixture."""

    def __call__(self, n: int = 2) -> Lan: ...


# --- small helpers -------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    """Poll `condition` until true; raise TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def py(code: str, *args: str) -> list[str]:
    """argv running `code` with this interpreter, isolated from the caller's environment."""
    return [sys.executable, "-I", "-c", code, *args]


def read_line(proc: subprocess.Popen[Any], timeout: float) -> str:
    """The next line of `proc`'s stdout (a PIPE), within `timeout` seconds.

    Reads the pipe's fd directly: a buffered readline() could swallow later output that a
    following communicate() then never sees."""
    if proc.stdout is None:
        raise ValueError("the process has no stdout pipe")
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    line = bytearray()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line from pid {proc.pid} within {timeout} s: {bytes(line)!r}")
        readable, _, _ = select.select([fd], [], [], left)
        if not readable:
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            err = ""
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2)
                if proc.stderr is not None:
                    raw = proc.stderr.read()
                    err = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            raise EOFError(f"pid {proc.pid} exited ({proc.returncode}) before a line: {err}")
        line += chunk
    return line.decode().rstrip("\n")


def _argv(cmd: Sequence[str] | str) -> list[str]:
    # A string is split like a shell would, but never run by one: no quoting surprises.
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], check=check)


def list_netns() -> list[str]:
    """Names of the machine's named network namespaces (`ip netns list`)."""
    # Lines look like "name" or "name (id: 3)".
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line]


def _add_netns(name: str) -> None:
    _ip("netns", "add", name)


def _del_netns(name: str) -> None:
    result = _ip("netns", "del", name, check=False)
    if result.returncode != 0 and (NETNS_DIR / name).exists():
        raise NetnsError(f"ip netns del {name} failed: {result.stderr}")


# --- can we make namespaces here? -----------------------------------------------------------


def _effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def netns_unavailable_reason(*, probe: bool = True) -> str | None:
    """Why network namespaces cannot be made here, or None when they can.

    With `probe`, a throwaway namespace with a bridge and a veth pair is made and deleted:
    a kernel without those drivers, or a container that forbids the mounts `ip netns` needs,
    only shows itself by trying."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found (install iproute2)"
    caps = _effective_caps()
    for bit, cap in ((_CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (_CAP_NET_ADMIN, "CAP_NET_ADMIN")):
        if not caps >> bit & 1:
            return f"no {cap} (run as root, or under `unshare -rnm` with a tmpfs mounted on /run)"
    return _probe() if probe else None


def _probe() -> str | None:
    name = f"{PREFIX}-{os.getpid()}-probe{next(_counter)}"
    try:
        for args in (
            ("netns", "add", name),
            ("-n", name, "link", "add", BRIDGE, "type", "bridge"),
            ("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"),
        ):
            result = _ip(*args, check=False)
            if result.returncode != 0:
                return f"`ip {' '.join(args)}` failed: {result.stderr.strip()}"
        return None
    finally:
        _ip("netns", "del", name, check=False)


@functools.cache
def cached_unavailable_reason() -> str | None:
    """`netns_unavailable_reason()`, probed once per process."""
    return netns_unavailable_reason()


def require_netns() -> None:
    """Skip the calling test where namespaces are unavailable; fail it if CI requires them."""
    reason = cached_unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(
            f"{REQUIRE_ENV}=1 but network namespaces are unavailable: {reason}", pytrace=False
        )
    pytest.skip(f"network namespaces unavailable: {reason}")


# --- killing what runs in a namespace -------------------------------------------------------


def _stop_popens(procs: Sequence[subprocess.Popen[Any]], grace: float) -> None:
    """SIGTERM every process, give them `grace` seconds together, SIGKILL the rest."""
    # Popen.send_signal does nothing once the child is reaped, so a reused pid is never hit.
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for proc in procs:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _pin_members(name: str) -> list[int]:
    """pidfds of the processes in namespace `name` (`ip netns pids`), other than us.

    Each pid is pinned with a pidfd and then checked to still be in the namespace, so a pid
    that died and was reused by an unrelated process in between is never signalled."""
    try:
        ns = (NETNS_DIR / name).stat()
    except FileNotFoundError:
        return []
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    pidfds = []
    for pid in {int(p) for p in pids if p.isdigit()} - {os.getpid()}:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            member = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            member = None
        if member is not None and (member.st_dev, member.st_ino) == (ns.st_dev, ns.st_ino):
            pidfds.append(pidfd)
        else:
            os.close(pidfd)
    return pidfds


def _kill_members(names: Sequence[str], grace: float) -> None:
    """SIGTERM everything running in the namespaces, then SIGKILL what outlives `grace`.

    A namespace that still has a process keeps existing (unnamed) after `ip netns del`, with
    its links and sockets, so this must run before deleting it."""
    pidfds = [fd for name in names for fd in _pin_members(name)]
    try:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            for fd in pidfds:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(fd, sig)
            if _wait_pidfds(pidfds, wait):
                return
    finally:
        for fd in pidfds:
            os.close(fd)


def _wait_pidfds(pidfds: Sequence[int], timeout: float) -> bool:
    """Whether every process exited within `timeout` (a pidfd turns readable on exit)."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    pending = set(pidfds)
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        for fd, _ in poller.poll(left * 1000):
            pending.discard(fd)
            poller.unregister(fd)
    return True


# --- leftovers of crashed runs --------------------------------------------------------------


def _process_start(pid: int) -> float:
    """Wall-clock start time of `pid` (to the second: boot time has that resolution)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    btime = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return btime + ticks / os.sysconf("SC_CLK_TCK")


def _creator_alive(pid: int, name: str) -> bool:
    try:
        started = _process_start(pid)
    except (OSError, IndexError):
        return False
    try:
        created = (NETNS_DIR / name).stat().st_mtime
    except FileNotFoundError:
        return True  # already gone: nothing to clean
    # A process started after the namespace was made did not make it: its pid was reused.
    # The slack covers the whole-second boot time.
    return started <= created + 2.0


def cleanup_stale() -> list[str]:
    """Delete `meshlan-<pid>-...` namespaces whose creating process is dead; their names.

    Runs that are alive are left alone. Their pid is all this can see, so a run in another
    pid namespace that shares /run/netns would look dead: don't share /run/netns that way."""
    stale = [
        name
        for name in list_netns()
        if (match := _STALE.match(name))
        and int(match[1]) != os.getpid()
        and not _creator_alive(int(match[1]), name)
    ]
    _kill_members(stale, grace=1.0)
    for name in stale:
        _del_netns(name)
    return stale


def _subnets_in_use() -> set[ipaddress.IPv4Network]:
    found = set()
    for name in list_netns():
        if match := _SUBNET_IN_NAME.search(name):
            found.add(ipaddress.IPv4Network(f"{match[1]}/24"))
    return found


def _rate_bytes(rate: str) -> float:
    """Bytes per second of a tc rate ("100mbit", "12.5mbps"; tc's k/m/g are powers of 10)."""
    match = _RATE.match(rate.strip())
    if not match:
        raise ValueError(f"not a tc rate: {rate!r} (like '100mbit' or '10mbps')")
    value = float(match[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[match[2].lower()]
    return value / 8 if match[3].lower() == "bit" else value


# --- the LAN ---------------------------------------------------------------------------------


class NetNode:
    """One host of a `Lan`: a namespace whose eth0 is plugged into the LAN's bridge."""

    def __init__(self, lan: Lan, name: str, netns: str, ip: str, port: str) -> None:
        self.lan = lan
        self.name = name
        self.netns = netns
        self.ip = ip
        self.port = port
        self.iface = IFACE
        self.attached = True
        self.blackholed = False
        self.rate: str | None = None
        self._prefixlen = lan.subnet.prefixlen
        self._shaped = False

    def __repr__(self) -> str:
        return f"NetNode({self.name!r}, ip={self.ip!r}, netns={self.netns!r})"

    def exec_args(self, cmd: Sequence[str] | str) -> list[str]:
        """argv that runs `cmd` inside this node's namespace."""
        return ["ip", "netns", "exec", self.netns, *_argv(cmd)]

    def run(
        self, cmd: Sequence[str] | str, *, check: bool = True, timeout: float = 30.0, **kw: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run `cmd` in the namespace to completion; text output captured by default."""
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        try:
            return subprocess.run(self.exec_args(cmd), check=check, timeout=timeout, **kw)
        except subprocess.CalledProcessError as error:
            error.add_note(f"in {self.netns}; stderr: {error.stderr}")
            raise

    def popen(self, cmd: Sequence[str] | str, **kw: Any) -> subprocess.Popen[Any]:
        """Start `cmd` in the namespace; the LAN's teardown stops it (TERM, then KILL)."""
        # `ip netns exec` execs the command, so the pid is the command's own.
        proc = subprocess.Popen(self.exec_args(cmd), **kw)
        self.lan._track(proc)
        return proc

    def ping(
        self,
        target: NetNode | str,
        timeout: float = 1.0,
        tool: Literal["auto", "ping", "python"] = "auto",
    ) -> bool:
        """Whether one ICMP echo to `target` is answered within `timeout` seconds."""
        address = target.ip if isinstance(target, NetNode) else target
        if tool == "ping" or (tool == "auto" and shutil.which("ping")):
            argv = ["ping", "-n", "-c1", "-W", f"{timeout:g}", address]
        else:
            # Machines without iputils (CI's image): the same echo from a raw socket.
            argv = [sys.executable, "-I", "-S", "-c", _PING_SCRIPT, address, str(timeout)]
        result = self.run(argv, check=False, timeout=timeout + 10)
        # ping: 0 answered, 1 no answer, 2 an error such as "Network is unreachable".
        if result.returncode in (0, 1):
            return result.returncode == 0
        if "unreachable" in (result.stdout + result.stderr).lower():
            return False
        raise NetnsError(f"{shlex.join(argv)} in {self.netns}: {result.stderr}")

    def cut(self) -> None:
        """Unplug the node: its bridge port goes down, so eth0 loses its carrier."""
        _ip("-n", self.lan.bridge_netns, "link", "set", self.port, "down")
        self.attached = False

    def reattach(self, timeout: float = 5.0) -> None:
        """Plug the node back in and wait until its port forwards again."""
        _ip("-n", self.lan.bridge_netns, "link", "set", self.port, "up")
        self.attached = True
        wait_until(self.port_ready, timeout, f"{self.name}'s port to forward again")

    def port_ready(self) -> bool:
        """Whether both ends of the node's link are up and its bridge port forwards."""
        br = ("-n", self.lan.bridge_netns)
        port = json.loads(_ip("-j", "-d", *br, "link", "show", "dev", self.port).stdout)[0]
        own = json.loads(_ip("-j", "-n", self.netns, "link", "show", "dev", IFACE).stdout)[0]
        state = port.get("linkinfo", {}).get("info_slave_data", {}).get("state")
        return bool(port["operstate"] == own["operstate"] == "UP" and state == "forwarding")

    def set_address(self, new_ip: str) -> None:
        """Replace the node's address, as a DHCP server handing out a new lease would.

        `new_ip` may carry a prefix ("10.1.2.9/24"); without one the LAN's /24 is used."""
        new = ipaddress.IPv4Interface(new_ip if "/" in new_ip else f"{new_ip}/{self._prefixlen}")
        if any(node.ip == str(new.ip) for node in self.lan.nodes if node is not self):
            raise ValueError(f"{new.ip} is already taken on {self.lan.name}")
        ns = ("-n", self.netns)
        _ip(*ns, "addr", "del", f"{self.ip}/{self._prefixlen}", "dev", IFACE)
        _ip(*ns, "addr", "add", str(new), "dev", IFACE)
        # Removing an interface's last IPv4 address also removes every route through it,
        # the multicast one included.
        _ip(*ns, "route", "replace", MCAST_ROUTE, "dev", IFACE)
        self.ip, self._prefixlen = str(new.ip), new.network.prefixlen

    def limit_rate(self, rate: str | None) -> None:
        """Shape the node's link to `rate` both ways (tc tbf, "100mbit"); None lifts it."""
        if rate is not None:
            _rate_bytes(rate)  # reject a typo before tc gets a half-applied state
        self.rate = rate
        self._apply_qdiscs()

    def blackhole(self) -> None:
        """Silently drop everything to and from the node; its link stays up."""
        self.blackholed = True
        self._apply_qdiscs()

    def heal(self) -> None:
        """Undo `blackhole()` (a rate limit set with `limit_rate` stays)."""
        self.blackholed = False
        self._apply_qdiscs()

    def _apply_qdiscs(self) -> None:
        # The node's eth0 shapes what it sends, its bridge port what it receives. This kernel
        # has no netem; a pfifo of limit 0 is always there and drops every packet it is given
        # (the kernel turns off its empty-queue bypass for limit 0).
        spec: list[str] | None = None
        if self.blackholed:
            spec = ["pfifo", "limit", "0"]
        elif self.rate is not None:
            per_s = _rate_bytes(self.rate)
            # 10 ms of traffic, at least a 64 KiB GSO packet, so bursts pass and rates hold.
            burst = max(int(per_s / 100), 65536)
            spec = ["tbf", "rate", self.rate, "burst", str(burst), "latency", "50ms"]
        for netns, dev in ((self.netns, IFACE), (self.lan.bridge_netns, self.port)):
            if spec is not None:
                _run(["tc", "-n", netns, "qdisc", "replace", "dev", dev, "root", *spec])
            elif self._shaped:
                _run(["tc", "-n", netns, "qdisc", "del", "dev", dev, "root"])
        self._shaped = spec is not None


_PING_SCRIPT = """
import os, socket, struct, sys, time
target, timeout = sys.argv[1], float(sys.argv[2])
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident, payload = os.getpid() & 0xFFFF, b"meshlan!"
header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, 1) + payload
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
try:
    sock.sendto(packet, (target, 0))
except OSError:
    sys.exit(1)
deadline = time.monotonic() + timeout
while (left := deadline - time.monotonic()) > 0:
    sock.settimeout(left)
    try:
        data, (sender, _) = sock.recvfrom(2048)
    except TimeoutError:
        break
    start = (data[0] & 0x0F) * 4
    kind, _, _, rid, _ = struct.unpack("!BBHHH", data[start : start + 8])
    if kind == 0 and rid == ident and sender == target:
        sys.exit(0)
sys.exit(1)
"""


class Lan:
    """A bridge namespace and nodes plugged into it; see the module docstring."""

    def __init__(
        self, n: int = 2, *, kill_grace: float = 2.0, rng: random.Random | None = None
    ) -> None:
        self.name = f"{PREFIX}-{os.getpid()}-{next(_counter)}"
        self.nodes: list[NetNode] = []
        self.kill_grace = kill_grace
        self.subnet = ipaddress.IPv4Network("10.0.0.0/24")  # replaced by the claimed one
        self.bridge_netns = ""
        # Forked children inherit this object and the atexit hook; only the creator may
        # tear the LAN down.
        self._owner = os.getpid()
        self._netns: list[str] = []  # recorded before creation, so a half-built LAN is undone
        self._procs: list[subprocess.Popen[Any]] = []
        self._next_index = 0
        self._closed = False
        with _live_lock:
            _live.add(self)
        try:
            self._claim_subnet(rng or random.Random())
            self._build_bridge()
            for _ in range(n):
                self.add_node()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"Lan({self.name!r}, subnet={self.subnet}, nodes={len(self.nodes)})"

    def __enter__(self) -> Lan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def netns_names(self) -> list[str]:
        """Every namespace of this LAN, bridge first."""
        return list(self._netns)

    def _new_netns(self, name: str) -> None:
        self._netns.append(name)
        _add_netns(name)

    def _claim_subnet(self, rng: random.Random) -> None:
        """Pick a 10.a.b.0/24 no other LAN on the machine uses, and hold it.

        The claim is the bridge namespace's name, which ends in the subnet. Two runs picking
        the same subnet at once each create their namespace and then look: whoever sees
        another claim backs off. At least the later one sees the earlier, so two never keep
        the same subnet (at worst both back off and pick again)."""
        taken = _subnets_in_use()
        for _ in range(100):
            subnet = ipaddress.IPv4Network(f"10.{rng.randrange(1, 255)}.{rng.randrange(256)}.0/24")
            if subnet in taken:
                continue
            name = f"{self.name}-br-{subnet.network_address}"
            self._new_netns(name)
            rivals = [
                other
                for other in list_netns()
                if other != name
                and (match := _SUBNET_IN_NAME.search(other))
                and match[1] == str(subnet.network_address)
            ]
            if not rivals:
                self.subnet, self.bridge_netns = subnet, name
                return
            _del_netns(name)
            self._netns.remove(name)
            taken.add(subnet)
        raise NetnsError("no free 10.x.y.0/24 found for a simulated LAN")

    def _build_bridge(self) -> None:
        br = ("-n", self.bridge_netns)
        _ip(*br, "link", "set", "lo", "up")
        # No STP, so ports forward the moment they are up; no multicast snooping, so the
        # bridge floods every group like a plain switch instead of waiting for IGMP reports
        # that no querier asks for.
        bridge = ("stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
        _ip(*br, "link", "add", BRIDGE, "type", "bridge", *bridge)
        _ip(*br, "link", "set", BRIDGE, "multicast", "on", "up")

    def add_node(self, name: str | None = None, timeout: float = 5.0) -> NetNode:
        """Plug a new node into the LAN (at the next free address) and wait until it is up."""
        index = self._next_index
        name = name or f"n{index}"
        if not _NODE_NAME.match(name) or any(node.name == name for node in self.nodes):
            raise ValueError(f"bad or duplicate node name {name!r}")
        taken = {node.ip for node in self.nodes}
        ip = next(str(host) for host in self.subnet.hosts() if str(host) not in taken)
        self._next_index += 1
        netns, port = f"{self.name}-{name}", f"v{index}"
        self._new_netns(netns)
        br, ns = ("-n", self.bridge_netns), ("-n", netns)
        # Made in the bridge namespace with the peer born in the node's: no moment where
        # either end lives in the machine's namespace, and no clash between the "eth0"s.
        _ip(*br, "link", "add", port, "type", "veth", "peer", "name", IFACE, "netns", netns)
        _ip(*br, "link", "set", port, "master", BRIDGE)
        _ip(*br, "link", "set", port, "multicast", "on", "up")
        _ip(*ns, "link", "set", "lo", "up")
        _ip(*ns, "link", "set", IFACE, "multicast", "on", "up")
        _ip(*ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", IFACE)
        # Multicast sockets that name no interface (zeroconf's InterfaceChoice.Default) need
        # this route; there is no default route on the LAN.
        _ip(*ns, "route", "add", MCAST_ROUTE, "dev", IFACE)
        node = NetNode(self, name, netns, ip, port)
        self.nodes.append(node)
        wait_until(node.port_ready, timeout, f"{name}'s link to come up")
        return node

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until every attached node's link is up and forwarding."""
        wait_until(
            lambda: all(node.port_ready() for node in self.nodes if node.attached),
            timeout,
            f"{self.name}'s links",
        )

    def _track(self, proc: subprocess.Popen[Any]) -> None:
        self._procs.append(proc)

    def close(self) -> None:
        """Stop every process of the LAN and delete its namespaces; safe to call again.

        Marked closed only once everything went: a Ctrl-C in the middle leaves the work to
        the atexit hook, which repeats the (idempotent) steps."""
        if self._closed or os.getpid() != self._owner:
            return
        try:
            _stop_popens(self._procs, self.kill_grace)
            _kill_members(self._netns, self.kill_grace)
        finally:
            # Nodes first: deleting them also removes their veth peers from the bridge.
            errors = []
            for name in reversed(self._netns):
                try:
                    _del_netns(name)
                except NetnsError as error:
                    errors.append(str(error))
        if errors:
            raise NetnsError("; ".join(errors))
        self._closed = True
        with _live_lock:
            _live.discard(self)


def _close_all() -> None:
    """atexit: tear down every LAN still open (a test run interrupted by Ctrl-C)."""
    with _live_lock:
        lans = list(_live)
    for lan in lans:
        try:
            lan.close()
        except Exception as error:  # exiting anyway: report, and try the others
            print(f"tests.lan: could not clean up {lan.name}: {error}", file=sys.stderr)


atexit.register(_close_all)
