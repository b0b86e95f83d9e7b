"""What every lab shares: a state file naming its processes, namespaces and endpoints, so `lab down`
and `lab status` work from any later process, and a teardown that leaves nothing behind."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netaudit.lab.processes import LabError, LabProcess, alive, failure_line, log_tail, module_argv, stop, wait_ready

START_TIMEOUT = 180.0
LEFTOVERS = "leftovers"
LAB_SUBDIRS = ("models", "pki", "decoy-ca", "nginx", "mlserver", "tensorboard-logs", "triton", "hostile-ca")


@dataclass
class LabEndpoint:
    name: str
    host: str
    port: int
    kind: str
    process: str
    job: str | None = None
    task: int | None = None
    coordination_leader: bool = False
    facts: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


def default_state_dir() -> Path:
    return Path(os.environ.get("NETAUDIT_LAB_DIR") or f"/tmp/netaudit-lab-{os.getuid()}")


# Every lab `lab up` can build, by the name its state file records; imported only when asked for, so the
# loopback lab needs none of the root labs' modules.
LAB_KINDS = {"loopback": "netaudit.lab.loopback:LoopbackLab", "segments": "netaudit.lab.segments:SegmentedLab",
             "cluster": "netaudit.lab.cluster:ClusterLab"}


def lab_class(kind: str) -> type["Lab"]:
    module, _, name = LAB_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


class Lab:
    kind = "base"
    rulesets: tuple[str, ...] = ()  # the firewalls `lab ruleset` can swap in; none on loopback

    def __init__(self, state_dir: Path | None = None):
        self.dir = Path(state_dir) if state_dir else default_state_dir()
        self.processes: list[LabProcess] = []
        self.endpoints: list[LabEndpoint] = []
        self.namespaces: list[str] = []
        self.info: dict = {}

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def load(self) -> bool:
        if not self.state_file.exists():
            return False
        state = json.loads(self.state_file.read_text())
        self.processes = [LabProcess(**p) for p in state["processes"]]
        self.endpoints = [LabEndpoint(**e) for e in state["endpoints"]]
        self.namespaces = state.get("namespaces", [])
        self.info = state.get("info", {})
        return True

    def _save(self) -> None:
        state = {"kind": self.kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "processes": [p.to_dict() for p in self.processes], "namespaces": self.namespaces,
                 "info": self.info, "endpoints": [asdict(e) for e in self.endpoints]}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def prepare(self) -> None:
        """Slow one-time work (building peer venvs) that must not count against the start-up deadline."""

    def _plan(self, deadline: float) -> None:
        raise NotImplementedError

    def up(self, timeout: float = START_TIMEOUT) -> "Lab":
        if self.load() and (any(alive(p) for p in self.processes) or self.namespaces):
            raise LabError(f"the lab in {self.dir} is already up; run `netaudit lab down` first")
        self.processes, self.endpoints, self.namespaces, self.info = [], [], [], {}
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self.prepare()
            deadline = time.monotonic() + timeout
            self._plan(deadline)
            self._save()
            self._give_up(wait_ready(self.processes, deadline))
        except BaseException:
            self.down()
            raise
        return self

    def _give_up(self, failed: dict[str, str]) -> None:
        """Go on without optional processes that did not start, and their endpoints; `lab status` and the
        demo say which, with the line of each one's log that says why."""
        if not failed:
            return
        gone = [p for p in self.processes if p.name in failed]
        stop(gone)
        for proc in gone:
            self.info.setdefault("skipped", {})[proc.name] = f"{failed[proc.name]}: {failure_line(proc)}"
            self.processes.remove(proc)
            Path(proc.log).unlink(missing_ok=True)
        self.endpoints = [e for e in self.endpoints if e.process not in failed]
        self._save()

    def down(self) -> list[str]:
        """Stop every process, delete every namespace (and with it its links, routes and nftables tables),
        remove the files the lab wrote. Returns the processes that needed SIGKILL."""
        if not self.processes and not self.namespaces:
            self.load()
        killed = stop(self.processes)
        from netaudit.lab.netns import delete_netns

        for name in reversed(self.namespaces):
            delete_netns(name)
        for path in [Path(p.log) for p in self.processes] + [self.state_file, self.dir / "policy.toml",
                                                             *self.dir.glob("modelserver*"),
                                                             *self.dir.glob("*-monitoring.config")]:
            path.unlink(missing_ok=True)
        self._remove_leftovers()
        for sub in LAB_SUBDIRS:
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        try:
            self.dir.rmdir()
        except OSError:
            pass
        self.processes, self.endpoints, self.namespaces = [], [], []
        return killed

    def _remove_leftovers(self) -> None:
        """Folders lab processes had to create outside the lab directory (Triton's model copies in /tmp),
        named in LEFTOVERS as they were made, so a killed process leaves nothing behind either."""
        listed = self.dir / LEFTOVERS
        try:
            paths = listed.read_text().split()
        except OSError:
            return
        for path in paths:
            if path.startswith("/tmp/"):
                shutil.rmtree(path, ignore_errors=True)
        listed.unlink()

    def status(self) -> dict:
        up = self.load()
        return {"kind": self.kind, "up": up and any(alive(p) for p in self.processes), "dir": str(self.dir),
                "processes": [{"name": p.name, "pid": p.pid, "alive": alive(p)} for p in self.processes],
                "namespaces": self.namespaces, "info": self.info, "endpoints": [asdict(e) for e in self.endpoints]}

    def exited(self) -> dict[str, str]:
        """Lab processes that are no longer running, with the end of their log: a scan that missed one of
        its endpoints says why, before `down` removes the logs."""
        return {p.name: log_tail(p, 3).strip() for p in self.processes if not alive(p)}

    def apply_ruleset(self, ruleset: str) -> None:
        raise LabError(f"the {self.kind} lab has no firewall")

    def vantage_argv(self, vantage: str, *argv: str) -> list[str]:
        raise LabError(f"the {self.kind} lab has no vantages to scan from")

    def scan_argv(self, vantage: str, engine: str | None = None) -> list[str]:
        raise LabError(f"the {self.kind} lab has no vantages to scan from")

    @staticmethod
    def _scan(*args: str, engine: str | None) -> list[str]:
        """`netaudit scan ARGS` as every lab vantage runs it: 1 s deadlines (the lab is local), JSON on stdout,
        the default engine unless one is named (raw SYNs as root, so the matrix shows what the firewall did)."""
        return [*module_argv("netaudit", "scan"), *args, *(["--engine", engine] if engine else []), "--timeout", "1",
                "--format", "json"]

    def targets(self) -> list[str]:
        return [e.target for e in self.endpoints]

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()


def saved_kind(state_dir: Path | None = None) -> str | None:
    state = (Path(state_dir) if state_dir else default_state_dir()) / "state.json"
    try:
        return json.loads(state.read_text()).get("kind")
    except (OSError, ValueError):
        return None
