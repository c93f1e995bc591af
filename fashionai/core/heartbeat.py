"""A job process's heartbeat to `fashionai launch`, so that a lost host ends the job instead of
hanging it.

ps-lite has no failure detection that works here: a process whose peer vanished (a dead host, a
link gone down) waits for it for good, with no log line. So every process that `launch` starts
with `FASHIONAI_HEARTBEAT=HOST:PORT:TIMEOUT` in its environment keeps one TCP connection to the
launcher: it says who it is, then sends a beat every few seconds and waits for the launcher's
answer. Each side watches the other:
- the launcher ends the job when a process has been silent for TIMEOUT seconds (its host or the
  link to it is gone), naming it (`fashionai.launcher`);
- a process that gets no answer for TIMEOUT seconds ends itself, so nothing is left running on a
  host that lost the launcher (the launcher has stopped the rest of the job by then).
A process also reports when it starts to join the kvstore and when it has joined, so that one
that never joins (a wrong address on a host with several interfaces) is named after TIMEOUT too.

Both ends are here: `Client` in each job process, `Heartbeats` in the launcher. One connection
per process: the client is process-wide state by nature, like logging's handlers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

VARIABLE = "FASHIONAI_HEARTBEAT"  # HOST:PORT:TIMEOUT_S, set by fashionai launch
ROLE_VARIABLE = "FASHIONAI_JOB_ROLE"  # how the launcher names this process ("worker 1 on node-b")
BEAT_S = 2.0


class Client:
    """The connection of this process to its launcher (a daemon thread beats on it)."""

    def __init__(self, host: str, port: int, timeout_s: float, role: str):
        self.address, self.timeout_s, self.role = (host, port), timeout_s, role
        self.lock = threading.Lock()
        self.sock = self._connect()
        self.send(f"hello {os.getpid()} {socket.gethostname()} {role}")
        threading.Thread(target=self._beat, name="fashionai-heartbeat", daemon=True).start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                sock = socket.create_connection(self.address, timeout=self.timeout_s)
                sock.settimeout(self.timeout_s)
                return sock
            except OSError as err:
                if time.monotonic() > deadline:
                    self._give_up(f"cannot reach the launcher at {self.address[0]}:{self.address[1]} ({err})")
                time.sleep(1.0)

    def send(self, message: str) -> None:
        """One line to the launcher, and its answer awaited; a silent launcher ends this process."""
        with self.lock:
            try:
                self.sock.sendall(f"{message}\n".encode())
                if not self.sock.recv(1):
                    raise ConnectionError("the launcher closed the connection")
            except OSError as err:
                self._give_up(f"the launcher at {self.address[0]}:{self.address[1]} stopped answering ({err})")

    def _beat(self) -> None:
        while True:
            time.sleep(BEAT_S)
            self.send("beat")

    def _give_up(self, why: str) -> None:
        log.error("%s: %s; this process (%s) ends here, as the rest of the job has", self.role, why, self.role)
        logging.shutdown()
        os._exit(1)


_client: Client | None = None


def start_from_env(env: dict[str, str] | None = None) -> Client | None:
    """Connect to the launcher named in FASHIONAI_HEARTBEAT, once per process; None outside a job."""
    global _client
    env = os.environ if env is None else env
    if _client is not None or VARIABLE not in env:
        return _client
    host, port, timeout = env[VARIABLE].rsplit(":", 2)
    _client = Client(host, int(port), float(timeout), env.get(ROLE_VARIABLE, "a job process"))
    return _client


def report(event: str) -> None:
    """Tell the launcher about a step it times (`joining`, `joined`); nothing outside a job."""
    if _client is not None:
        _client.send(event)


# --- the launcher's end -------------------------------------------------------------------------
@dataclass
class Peer:
    """What the launcher knows of one job process from its heartbeat connection."""

    last: float
    joining: float | None = None  # when it started to join the kvstore
    joined: bool = False
    closed: bool = False


class Heartbeats:
    """The launcher's end of the heartbeats (fashionai.core.heartbeat): accepts each process's
    connection, answers every line it sends, and remembers when each was last heard."""

    def __init__(self, host: str):
        self.server = socket.create_server((host, 0))
        self.address = f"{host}:{self.server.getsockname()[1]}"
        self.peers: dict[str, Peer] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="heartbeat-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed: the job is over
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        name = ""
        with conn, conn.makefile("rb") as lines:
            for raw in lines:
                words = raw.decode(errors="replace").strip().split(maxsplit=3)
                with self.lock:
                    if words[:1] == ["hello"] and len(words) == 4:
                        name = words[3]
                        self.peers[name] = Peer(time.monotonic())
                    elif name:
                        self._heard(self.peers[name], words[:1])
                try:
                    conn.sendall(b".")
                except OSError:
                    break
        with self.lock:
            if name:
                self.peers[name].closed = True

    @staticmethod
    def _heard(peer: Peer, event: list[str]) -> None:
        peer.last = time.monotonic()
        if event == ["joining"]:
            peer.joining = peer.last
        elif event == ["joined"]:
            peer.joined = True

    def trouble(self, timeout_s: float) -> str | None:
        """Why the job cannot go on, from the heartbeats: processes silent for `timeout_s`, or a
        process joining the kvstore for that long; then every process still joining is named (when
        one host announces a wrong address, all workers wait, the others as long); None while all
        is well."""
        now = time.monotonic()
        with self.lock:
            silent = [(name, now - p.last) for name, p in self.peers.items()
                      if not p.closed and now - p.last > timeout_s]
            joining = {name: now - p.joining for name, p in self.peers.items()
                       if p.joining is not None and not p.joined}
        stuck = list(joining) if any(waited > timeout_s for waited in joining.values()) else []
        if silent:
            return (f"{', '.join(name for name, _ in silent)} went silent: no heartbeat for "
                    f"{max(s for _, s in silent):.0f} s (its host, or the network to it, is gone)")
        if stuck:
            return (f"{', '.join(stuck)} did not join the job's kvstore within {timeout_s:.0f} s: can each host reach "
                    "the scheduler, and the others reach it? On a host with several network interfaces, give its "
                    "address= (or interface=) in the hosts file")
        return None

    def close(self) -> None:
        self.server.close()
