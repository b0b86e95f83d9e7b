"""The netaudit command line. It parses options and calls the library; heavy imports wait until needed,
so `netaudit --help` stays fast."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netaudit import DISTRIBUTION, LAB_INSTALL
from netaudit.core.errors import UsageError
from netaudit.core.textsafe import terminal_lines, terminal_safe

MAX_WORKERS = 64  # scan --workers N: scan processes on one host

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_INTERNAL = 0, 1, 2, 3, 4
SEVERITY_CHOICES = ("critical", "high", "medium", "low", "info")
FORMAT_CHOICES = ("text", "json", "html", "sarif", "junit", "prom", "ocsf")
SCAN_FORMATS = FORMAT_CHOICES + ("jsonl",)
ENGINES = ("connect", "syn", "nmap")
SUFFIX_FORMATS = {".json": "json", ".html": "html", ".htm": "html", ".txt": "text", ".sarif": "sarif",
                  ".xml": "junit", ".prom": "prom", ".ocsf": "ocsf", ".jsonl": "jsonl"}

EPILOG = """\
exit codes: 0 finished, nothing at or above --fail-on; 1 a finding at or above --fail-on;
            2 bad usage or input (nothing was sent, written or recorded); 3 scan did not finish (output
            marked incomplete); 4 internal error or broken install; 5 output could not be written (the
            run is not recorded; the message says where the result was kept)
"""

SCAN_EXAMPLES = """\
targets:
  198.18.1.10            an IP address          gpu-node-3.internal   a hostname
  198.18.1.0/24          a CIDR                 198.18.1.10-20        a range (or A.B.C.D-A.B.C.E)
  198.18.1.10:2222       one host and port      tf-config:tf.json     every task in a TF_CONFIG / ClusterSpec
  masscan:FILE           open ports in masscan -oJ, -oL or -oX output (the format is read from the content)
  zmap:FILE              zmap -O csv with saddr,sport; or saddr lines (one port per zmap run: pass it as -p)
  nmap:FILE              open ports in nmap -oX output
  -                      read targets from stdin, one per line
  Only the open ports a discovery file lists are fingerprinted; --scope still applies to them.

examples:
  netaudit scan 198.18.1.0/24 --scope 198.18.0.0/15
  netaudit scan tf-config:$HOME/tf_config.json --fail-on critical
  masscan 10.0.0.0/8 -p 2222,8500,8501 --rate 100000 -oJ sweep.json && netaudit scan masscan:sweep.json --scope 10.0.0.0/8
  netaudit lab status --targets | netaudit scan - --format json -o scan.json
  netaudit scan 198.18.0.0/16 --scope 198.18.0.0/15 -p 2222 --format jsonl -o scan.jsonl
  netaudit scan 198.18.0.0/16 --scope 198.18.0.0/15 --shard 3/8 -o shard3.jsonl   (then: netaudit report shard*.jsonl)
  netaudit scan 198.18.0.0/16 --scope 198.18.0.0/15 -p 2222 --workers 8 -o scan.jsonl   (8 cores, one result)
""" + EPILOG


def families_help() -> str:
    """The server families the registry declares, for `scan --help`."""
    from netaudit.core import registry

    lines = ["server families recognised (kind: usual ports):"]
    for family in sorted(registry.families(), key=lambda f: not any(k.sensitive for k in f.kinds)):
        kinds = "; ".join(f"{k.name}" + (f" ({', '.join(map(str, k.ports))})" if k.ports else "")
                          for k in family.kinds)
        lines.append(f"  {family.title}\n      {kinds}")
    return "\n".join(lines) + "\n\n"


class VersionAction(argparse.Action):
    """`--version` names the families too: an install that lost its declarations shows it here (exit 4)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from netaudit import __version__
        from netaudit.core import registry

        names = ", ".join(f.name for f in registry.families())
        print(f"netaudit {__version__}\nserver families: {names}")
        parser.exit(EXIT_OK)


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors use the documented exit code 2 with a one-line hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"netaudit: error: {message} (see {self.prog} --help)\n")


def _bounded(convert, noun: str, least, minimum: str):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not value >= least or value != value:  # also NaN
            raise argparse.ArgumentTypeError(f"{text!r} must be {minimum}")
        return value
    return parse


positive_float = _bounded(float, "a number", 1e-9, "greater than 0")
positive_int = _bounded(int, "a whole number", 1, "at least 1")
non_negative_int = _bounded(int, "a whole number", 0, "0 or more")


def add_history_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="PATH", help="scan history (SQLite); default $NETAUDIT_STORE or "
                   "~/.local/share/netaudit/history.sqlite")
    p.add_argument("--no-history", action="store_true", help="do not read or record history for this run")
    p.add_argument("--baseline", metavar="FILE|RUN_ID",
                   help="diff against this result file or stored run (default: the last complete run of the "
                        "same targets, ports and vantage)")
    p.add_argument("--fail-on-new", choices=SEVERITY_CHOICES, metavar="SEVERITY",
                   help="exit 1 only when a NEW finding (not in the baseline) is at or above this severity")
    p.add_argument("--accept", metavar="FILE", help="accept list (TOML [[accept]] id or rule/host/port, reason, "
                   "owner, expires): accepted findings stay visible but do not fail --fail-on")


def add_output_options(p: argparse.ArgumentParser, formats: tuple[str, ...] = FORMAT_CHOICES) -> None:
    extra = (" jsonl streams each endpoint as it is finished, so memory stays flat on large sweeps; build the "
             "other formats from it with convert or report.") if "jsonl" in formats else ""
    p.add_argument("--format", choices=formats,
                   help="output format (default: text on the terminal, or taken from the -o file's suffix). ocsf "
                        "writes one OCSF 1.5.0 Detection Finding per finding, one JSON object a line (suffix .ocsf)."
                        + extra)
    p.add_argument("-o", "--output", metavar="FILE", help="write the output here instead of stdout")
    p.add_argument("--fail-on", choices=SEVERITY_CHOICES, metavar="SEVERITY",
                   help="exit 1 when any finding is at or above this severity: " + "|".join(SEVERITY_CHOICES))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="netaudit", description="Find TensorFlow servers (tf.distribute.Server, TF Serving) on a "
                    "network and prove what an outsider can do with them.",
                    epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction, nargs=0,
                        help="print the version and the server families this install loaded, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    scan = sub.add_parser("scan", help="scan targets from where this process runs (one vantage)",
                          description="Discover open ports, fingerprint TF servers with read-only RPCs, and report "
                          "findings. Probes never change a server's state.",
                          epilog=families_help() + SCAN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("targets", nargs="*", metavar="TARGET", help="what to scan (see targets below)")
    scan.add_argument("-p", "--ports", default="tf", metavar="SPEC",
                      help="ports: 2222,8500-8501 or the named set 'tf' (default), or a mix")
    scan.add_argument("--engine", choices=ENGINES,
                      help="discovery engine: connect (TCP connect, no privileges), syn (raw SYN packets with "
                           "scapy, needs CAP_NET_RAW: closed vs filtered, with the ICMP reason and who answered), nmap "
                           "(the nmap binary, -sS with CAP_NET_RAW, else -sT). Default: syn with CAP_NET_RAW on "
                           "IPv4, else connect (root in a container often lacks the capability)")
    scan.add_argument("--scope", metavar="CIDR[,CIDR...]",
                      help="addresses this scan may touch; any target outside is refused before a packet is sent. "
                           "Required for more than a /16")
    scan.add_argument("--vantage", metavar="NAME", help="name of the place this scan runs from (a policy segment; "
                      "with --policy and no --vantage, the segment that holds this machine's source address). With "
                      "--policy k8s:, k8s:NS/POD names the scanning pod (default: POD_NAMESPACE and POD_NAME, else "
                      "the pod or node with this machine's source address)")
    scan.add_argument("--policy", metavar="FILE",
                      help="segments and allowed reachability (TOML), or k8s:SNAPSHOT[,...] (k8s: alone: the live API) "
                           "for the cluster's NetworkPolicies: the result then carries this vantage's policy "
                           "findings (reachable but not allowed; allowed but unreachable), which --fail-on and "
                           "--fail-on-new gate on: a pre-deployment check in one command")
    scan.add_argument("--timeout", type=positive_float, default=2.0, metavar="SECONDS",
                      help="deadline for each connection and each RPC (default 2)")
    scan.add_argument("--concurrency", type=positive_int, default=512, metavar="N",
                      help="parallel connections during discovery (default 512)")
    scan.add_argument("--probe-concurrency", type=positive_int, metavar="N",
                      help="open ports fingerprinted at once (default 128); each holds one or two connections to its "
                      "server and at most a few hundred KiB of its replies")
    scan.add_argument("--workers", type=positive_int, default=1, metavar="N",
                      help="run the scan as N local processes, one result (default 1). Fingerprinting uses one core "
                      "per process, so on a host with more cores a large sweep finishes sooner with N up to their "
                      "number. --concurrency, --probe-concurrency and --rate stay totals, shared among the workers. "
                      f"At most {MAX_WORKERS}; needs --engine connect or syn")
    scan.add_argument("--rate", type=positive_float, default=0, metavar="N",
                      help="at most N new connections per second (default: unlimited)")
    scan.add_argument("--retries", type=non_negative_int, default=1, metavar="N",
                      help="retries for a port that gave no answer, and for a gRPC connection still being set up or "
                      "a call whose deadline passed (default 1)")
    scan.add_argument("--max-time", type=positive_float, metavar="SECONDS",
                      help="stop after this long; the output is marked incomplete and the exit code is 3")
    scan.add_argument("--model-names", metavar="FILE",
                      help="extra model names to try on ModelServer endpoints, one per line (the built-in list "
                           "and names leaked by the server's metrics are always tried)")
    scan.add_argument("--ca-bundle", metavar="FILE", help="PEM trust anchors for certificate checks (an internal CA)")
    scan.add_argument("--client-cert", metavar="FILE",
                      help="PEM client certificate, so probes can look inside mTLS endpoints")
    scan.add_argument("--client-key", metavar="FILE", help="PEM key for --client-cert (if not in the same file)")
    scan.add_argument("--all-states", action="store_true",
                      help="also list closed and undetermined ports of swept ranges (host:port targets always are)")
    scan.add_argument("--shard", metavar="K/N",
                      help="scan only the K-th of N slices of the target x port space (a stable hash of address "
                           "and port, as zmap's --shards); run the N shards on N machines and merge them with report")
    add_output_options(scan, SCAN_FORMATS)
    add_history_options(scan)

    lab = sub.add_parser("lab", help="the built-in lab: real TF servers in network segments (root) or on loopback",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Start, stop, inspect or scan from the built-in lab. As root, `up` builds "
                         "network namespaces in 198.18.0.0/15 (segments cluster, apps, corp, edge) joined by a router "
                         "whose nftables ruleset plays the VPC firewall, with a TF cluster and a ModelServer in "
                         "`cluster`. Without root (or with --loopback) it starts the loopback lab on 127.0.0.1: TF "
                         "clusters, a ModelServer, TLS variants and decoys. `up --hostile` adds hostile servers on "
                         "127.0.0.1 (tarpits, drips, HTTP/2 floods, oversized, invalid and compressed-bomb gRPC "
                         "replies, resets, endless HTTP, TLS garbage and stalls, escape sequences in every field: "
                         "see netaudit/lab/hostile.py) to check that no server can crash, stall, bloat or spoof a "
                         f"scan. Needs: {LAB_INSTALL}.",
                         epilog="examples:\n  netaudit lab up\n  netaudit lab up --loopback --hostile --tarpits 100\n"
                                "  netaudit lab scan edge -o edge.json\n"
                                "  netaudit lab ruleset isolated\n  netaudit lab impair edge --delay 200 --loss 10\n"
                                "  netaudit lab impair edge --clear\n  netaudit lab down")
    lab.add_argument("action", choices=["up", "down", "status", "scan", "ruleset", "impair"],
                     help="scan VANTAGE: scan the cluster segment from that segment; ruleset NAME: swap the firewall; "
                     "impair VANTAGE: packet loss and delay on that host's link (tc netem, or a delay line where "
                     "the kernel has no netem)")
    lab.add_argument("name", nargs="?", metavar="VANTAGE|RULESET", help="for scan, impair and ruleset")
    lab.add_argument("--targets", action="store_true", help="status: print only host:port lines, for `netaudit scan -`")
    lab.add_argument("--no-decoys", action="store_true", help="up, loopback lab: start no decoys")
    lab.add_argument("--no-peers", action="store_true",
                     help="up, loopback lab: leave out KServe, MLServer, Triton and TensorBoard (faster)")
    lab.add_argument("--loopback", action="store_true", help="up: the loopback lab even as root")
    lab.add_argument("--no-install", action="store_true",
                     help="up: as root, do not apt-get install missing lab packages (iproute2, nftables, procps)")
    lab.add_argument("--hostile", action="store_true",
                     help="up, loopback lab: also start the hostile servers (one process, 127.0.0.1 only)")
    lab.add_argument("--tarpits", type=non_negative_int, default=0, metavar="N",
                     help="up --hostile: this many extra tarpit ports (default 0)")
    lab.add_argument("--ruleset", default="leaky", choices=["leaky", "isolated"],
                     help="up, segmented lab: the firewall to start with (default leaky: realistic mistakes)")
    lab.add_argument("--engine", choices=ENGINES,
                     help="scan: discovery engine (default as for scan: syn as root on IPv4)")
    lab.add_argument("-o", "--output", metavar="FILE", help="scan: write the JSON result here (default stdout)")
    lab.add_argument("--delay", type=int, default=200, metavar="MS", help="impair: added delay (default 200 ms)")
    lab.add_argument("--loss", type=float, default=10.0, metavar="PCT",
                     help="impair: percent of packets lost each way (default 10)")
    lab.add_argument("--clear", action="store_true", help="impair: remove the vantage's impairment")

    report = sub.add_parser("report", help="merge scans from several vantages, apply a policy, render",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Merge scan results taken from several vantages into one report: the "
                            "reachability matrix (vantage x endpoint), every scan's findings, a finding for each "
                            "reachability the --policy does not allow, and what it expects but was unreachable.",
                            epilog="example:\n  netaudit report corp.json edge.json apps.json --policy policy.toml "
                                   "-o report.html --fail-on high\n\n" + EPILOG)
    report.add_argument("results", nargs="+", metavar="RESULT.json",
                        help="scan results (netaudit scan --format json or jsonl); shard results of one vantage "
                             "(scan --shard K/N) merge into one column")
    report.add_argument("--policy", metavar="FILE", help="segments, trust and allowed reachability (TOML), or "
                        "k8s:SNAPSHOT[,...] / k8s: for the cluster's NetworkPolicies")
    add_output_options(report)
    add_history_options(report)

    convert = sub.add_parser("convert", help="render one result (a jsonl stream, a scan or report JSON) in another "
                             "format", formatter_class=argparse.RawDescriptionHelpFormatter,
                             description="Read a scan result, such as the JSON lines of scan --format jsonl (complete "
                             "or cut short by an interrupt), or a report's JSON, and write it in any output format. "
                             "Nothing is scanned and no history is recorded.",
                             epilog="examples:\n  netaudit convert scan.jsonl -o scan.json\n"
                                    "  netaudit convert scan.jsonl --format html -o scan.html\n"
                                    "  netaudit convert scan.json --format ocsf -o findings.ocsf   (a SIEM's OCSF "
                                    "intake)\n\n" + EPILOG)
    convert.add_argument("result", metavar="RESULT", help="a scan result (.jsonl stream or .json) or a report's .json")
    add_output_options(convert)

    history = sub.add_parser("history", help="past runs, one run, or the diff between two",
                             description="List the runs in the history store, show one, or diff two: which "
                             "findings are new, persisting and resolved.")
    history.add_argument("runs", nargs="*", metavar="RUN", help="no RUN: list; one: show it; two: diff them")
    history.add_argument("--store", metavar="PATH", help="the history store (default as for scan)")

    export = sub.add_parser("export", help="write netaudit's fingerprints for other tools (nmap service probes)",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Write nmap service probes generated from netaudit's own signatures, so "
                            "`nmap -sV` names every family whose module declares one-request signatures: "
                            "tf.distribute.Server (job, replica, task), TF Serving gRPC and REST, KServe V1 REST, "
                            "Open Inference Protocol REST and gRPC (KServe, MLServer, Triton, with version) and "
                            "TensorBoard (version, log directory). The probes send only netaudit's read-only "
                            "requests. nmap sees less than netaudit: nothing inside TLS, one request per family, no "
                            "model inventory, no version range, no findings.",
                            epilog="examples:\n  netaudit export nmap-probes -o tf-probes\n"
                                   "  nmap -sV --versiondb tf-probes -p 2222,6006,8000,8001,8080,8081,8500,8501 "
                                   "198.18.1.0/24\n"
                                   "  netaudit export nmap-probes --with-stock /usr/share/nmap/nmap-service-probes "
                                   "-o all-probes\n\n" + EPILOG)
    export.add_argument("what", choices=["nmap-probes"], help="nmap-probes: a file for nmap --versiondb")
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    export.add_argument("--with-stock", metavar="PATH",
                        help="prepend this stock nmap-service-probes file (e.g. /usr/share/nmap/nmap-service-probes), "
                             "so one --versiondb file keeps nmap's own probes too")

    k8s = sub.add_parser("k8s", help="Kubernetes: what a cluster's NetworkPolicies intend for its TF workloads",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="expect: for every TF workload pod in the snapshots and manifests (TFJob "
                         "replicas, TF Serving, KServe predictors, TensorBoard, any pod with a port of the tf set), "
                         "every port it serves and every source, what the NetworkPolicies intend: allowed, denied or "
                         "unknown, with the policies and rules that decide. Nothing is sent. Manifests that are not "
                         "deployed yet (TFJob, Deployment, StatefulSet, InferenceService) count with the pods they "
                         "would make.",
                         epilog="examples:\n  kubectl get namespaces,pods,services,networkpolicies -A -o json > "
                                "cluster.json\n  netaudit k8s expect cluster.json\n"
                                "  netaudit k8s expect cluster.json tfjob.yaml --from apps --from 10.0.0.0/8 "
                                "--fail-on high\n\n" + EPILOG)
    k8s.add_argument("action", choices=["expect"], help="expect: the intended reachability, from the snapshot alone")
    k8s.add_argument("snapshots", nargs="*", metavar="SNAPSHOT",
                     help="kubectl -o json or API list output, or YAML manifests (several merge); none: the live "
                          "API (kubeconfig, else the pod's service account)")
    k8s.add_argument("--from", dest="sources", action="append", default=[], metavar="NS[/POD]|CIDR",
                     help="a source: a namespace's unlabeled pod, one pod, or an address outside the cluster "
                          "(default: every namespace's unlabeled pod and 0.0.0.0/0)")
    k8s.add_argument("--format", choices=("text", "json"), help="text (default) or json (netaudit/k8s-expect-v1)")
    k8s.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    k8s.add_argument("--fail-on", choices=SEVERITY_CHOICES, metavar="SEVERITY",
                     help="exit 1 when any finding is at or above this severity")

    demo = sub.add_parser("demo", help="lab up -> scan from every vantage -> HTML, JSON, SARIF, JUnit -> lab down",
                          description="Bring the lab up (the segmented lab as root, else the loopback lab), scan it "
                          "from every vantage, merge the scans against the lab's policy, write report.html, "
                          "report.json, report.sarif, junit.xml and summary.txt into one folder, print the report's "
                          "path and a summary, and bring the lab down.")
    demo.add_argument("-o", "--output", default="netaudit-demo", metavar="DIR",
                      help="folder for the reports (default ./netaudit-demo)")
    demo.add_argument("--loopback", action="store_true",
                      help="use the loopback lab even as root (one vantage, plus TLS variants and decoys)")
    demo.add_argument("--no-install", action="store_true",
                      help="as root, do not apt-get install the lab's Debian packages (iproute2, nftables, procps) "
                           "when they are missing; fall back to the loopback lab instead")
    return parser


def write_output(text: str, output, encoding: str = "utf-8") -> None:
    """`output` is an Output opened (and so checked) before the work; latin-1 writes back bytes that were
    read as latin-1 unchanged."""
    from netaudit.outputs.destination import write_text

    write_text(text, output, encoding)


def open_output(args: argparse.Namespace):
    from netaudit.outputs.destination import Output

    return Output.open(args.output)


def exit_code(data: dict, fail_on: str | None, fail_on_new: str | None = None) -> int:
    from netaudit.results.history import gating
    from netaudit.core.model import severity_rank

    if not data["complete"]:
        return EXIT_INCOMPLETE
    for threshold, only_new in ((fail_on, False), (fail_on_new, True)):
        if threshold and any(severity_rank(f["severity"]) >= severity_rank(threshold)
                             for f in gating(data["findings"], only_new)):
            return EXIT_FINDINGS
    return EXIT_OK


def output_format(args: argparse.Namespace) -> str:
    return args.format or (SUFFIX_FORMATS.get(Path(args.output).suffix.lower()) if args.output else None) or "text"


@dataclass
class RunHistory:
    """The history side of a scan or report, opened before the work (a bad accept list, baseline or store is
    exit 2 with nothing sent) and committed only once the output is written."""

    store: Any
    accepted: list
    baseline: dict | None
    label: str | None

    def annotate(self, data: dict) -> None:
        """The diff against the baseline (the last comparable run when none was given) and the accept list."""
        from netaudit.results.history import annotate, scope_key

        baseline, label = self.baseline, self.label
        if baseline is None and self.store is not None:
            previous = self.store.previous(scope_key(data))
            if previous is not None:
                baseline, label = self.store.run(previous), f"run {previous}"
        annotate(data, baseline, label, self.accepted)


def open_history(args: argparse.Namespace) -> RunHistory:
    from netaudit.results.history import Store, default_store, load_accept_list
    from netaudit.results.load import load_scan_or_report

    accepted = load_accept_list(args.accept) if args.accept else []
    baseline, label = None, None
    if args.baseline and not args.baseline.isdigit():
        baseline, label = load_scan_or_report(args.baseline), args.baseline
    path = Path(args.store) if args.store else default_store()
    if args.baseline and args.baseline.isdigit():
        if args.no_history:
            raise UsageError("--baseline RUN_ID needs the history store (drop --no-history)")
        if not path.exists():
            raise UsageError(f"no run {args.baseline}: there is no history store at {path}")
    store = None if args.no_history else Store(path)
    if args.baseline and args.baseline.isdigit():
        baseline, label = store.run(int(args.baseline)), f"run {args.baseline}"
    return RunHistory(store, accepted, baseline, label)


def finish_data(data: dict, args: argparse.Namespace, output, history: RunHistory, spool=None) -> int:
    """The baseline diff and the accept list, then the output; the run is recorded only if the output was
    written, and a result that could not be written is kept elsewhere and said so (exit 5). With a spool,
    `data` is the summary history keeps (findings compact) and the writers read the whole result from it."""
    from netaudit.results.history import Recorded
    from netaudit.core.errors import OutputError
    from netaudit.outputs.render import FORMATS

    fmt = output_format(args)
    history.annotate(data)
    whole = data
    try:
        with recorded(history, data):
            whole = spool.view(data) if spool is not None else data
            write_output(FORMATS[fmt](Recorded(whole)), output)
    except OutputError as exc:
        raise OutputError(f"{exc}; the run is not recorded in history; {keep_result(whole)}") from None
    return exit_code(data, args.fail_on, args.fail_on_new)


@contextmanager
def recorded(history: RunHistory, data: dict):
    if history.store is None:
        yield
        return
    with history.store.recording(data) as run_id:
        data["run_id"] = run_id
        yield


def keep_result(data: dict) -> str:
    """Where the result went when its output could not be written: a JSON file `convert` reads."""
    import tempfile

    from netaudit.outputs.json_pieces import iter_json

    try:
        fd, path = tempfile.mkstemp(prefix="netaudit-result-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(iter_json({k: v for k, v in data.items() if k != "run_id"}))
    except OSError as exc:
        return f"the result could not be kept either ({exc.strerror})"
    return f"the result is kept in {path} (netaudit convert {path} -o FILE)"


def result_options(targets, args: argparse.Namespace) -> dict:
    """What a result records of the command line beyond the scan's own options."""
    options = {"ports_spec": args.ports}
    if sources := targets.sources():
        options["target_sources"] = sources
    return options


def say_incomplete(stats: dict) -> None:
    print(f"netaudit: scan incomplete: {terminal_safe(str(stats.get('incomplete_reason')))}", file=sys.stderr)


def stream_scan(targets, opts, writer, assessor, workers: int):
    """The scan, assessed, into a stream writer, in this process or in `workers` processes; the writer's
    trailer is left to the caller (history annotates it first)."""
    if workers > 1:
        from netaudit.scanner.workers import run_workers

        result = run_workers(targets, opts, workers, writer, assessor)
    else:
        from netaudit.scanner.scan import scan

        result = scan(targets, opts, sink=writer, assessor=assessor)
    if not result.complete:
        say_incomplete(result.stats)
    return result


def scan_to_stream(targets, opts, assessor, args: argparse.Namespace) -> int:
    """scan --format jsonl: endpoints are written as they are finished, the trailer after history. The file
    is written in place (not atomically), so what an interrupted or killed scan found is there."""
    from netaudit.results.stream import StreamWriter

    output = open_output(args)  # checked before anything is truncated or sent
    history = open_history(args)
    out = output.stream()
    try:
        writer = StreamWriter(out, result_options(targets, args))
        data = writer.summary(stream_scan(targets, opts, writer, assessor, args.workers))
        history.annotate(data)
        with recorded(history, data):
            writer.end(data)
    finally:
        if out is not sys.stdout:
            out.close()
    return exit_code(data, args.fail_on, args.fail_on_new)


def read_model_names(path: str | None) -> tuple[str, ...]:
    from netaudit.targets.parse import read_target_lines

    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8") as fh:
            names = read_target_lines(fh)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --model-names {path}: {getattr(exc, 'strerror', None) or exc}") from None
    bad = [n for n in names if "/" in n or ":" in n or " " in n]
    if bad:
        raise UsageError(f"--model-names {path}: {bad[0]!r} is not a model name (no '/', ':' or spaces)")
    return tuple(names)


def tls_options(args: argparse.Namespace):
    from netaudit.probes.transport.tls import TlsOptions

    paths = {}
    for option in ("ca_bundle", "client_cert", "client_key"):
        value = getattr(args, option)
        if value is None:
            continue
        try:
            text = Path(value).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read --{option.replace('_', '-')} {value}: "
                             f"{getattr(exc, 'strerror', None) or exc}") from None
        if "-----BEGIN" not in text:
            raise UsageError(f"--{option.replace('_', '-')} {value} is not a PEM file")
        paths[option] = Path(value)
    if "client_key" in paths and "client_cert" not in paths:
        raise UsageError("--client-key needs --client-cert")
    if "client_cert" in paths and "client_key" not in paths:
        paths["client_key"] = paths["client_cert"]
    return TlsOptions(**paths)


def cmd_scan(args: argparse.Namespace) -> int:
    import shutil

    from netaudit.discovery.engines import default_engine, raw_sockets_allowed
    from netaudit.scanner.scan import ScanOptions
    from netaudit.targets.parse import build_targets

    policy = None
    if args.policy:
        from netaudit.policy.k8s_policy import load_policy_spec

        policy = load_policy_spec(args.policy)
    targets = build_targets(args.targets, ports=args.ports, scope=args.scope, shard=args.shard)
    engine, engine_reason = (args.engine, "chosen with --engine") if args.engine else default_engine(targets)
    if engine == "nmap" and targets.shard:
        raise UsageError("--shard needs --engine connect or syn: nmap is handed whole networks, not a shard's pairs")
    if engine == "nmap" and args.workers > 1:
        raise UsageError("--workers needs --engine connect or syn: nmap is handed whole networks, not a worker's hosts")
    if args.workers > MAX_WORKERS:
        raise UsageError(f"--workers {args.workers} is more than {MAX_WORKERS}")
    if engine == "nmap" and not shutil.which("nmap"):
        raise UsageError("--engine nmap needs the nmap binary (apt install nmap)")
    if engine == "syn" and targets.has_ipv6():
        raise UsageError("--engine syn scans IPv4 only; use --engine connect for IPv6 targets")
    if engine == "syn" and not raw_sockets_allowed():
        raise UsageError("--engine syn sends raw packets and needs CAP_NET_RAW, which this process lacks; "
                         "use --engine connect")
    vantage, segment = args.vantage, None
    if policy is not None:
        from netaudit.policy.reachability import locate_vantage

        vantage, segment, why = locate_vantage(policy, targets, args.vantage)
        if why:
            print(f"netaudit: {why}", file=sys.stderr)
    if sys.stderr.isatty():
        print(f"netaudit: discovery engine {engine} ({engine_reason})", file=sys.stderr)
    opts = ScanOptions(timeout=args.timeout, concurrency=args.concurrency, rate=args.rate, retries=args.retries,
                       max_time=args.max_time, vantage=vantage, all_states=args.all_states,
                       extra_model_names=read_model_names(args.model_names), tls=tls_options(args),
                       engine=engine, engine_reason=engine_reason,
                       **({"probe_concurrency": args.probe_concurrency} if args.probe_concurrency else {}))
    from netaudit.policy.assessor import Assessor

    assessor = Assessor(policy, segment)
    if output_format(args) == "jsonl":
        return scan_to_stream(targets, opts, assessor, args)
    from netaudit.results.spool import Spool
    from netaudit.results.stream import StreamWriter

    output = open_output(args)
    history = open_history(args)
    with Spool() as spool:  # the assessed stream, which every other format is written from
        writer = StreamWriter(None, result_options(targets, args), spool)
        data = writer.summary(stream_scan(targets, opts, writer, assessor, args.workers))
        return finish_data(data, args, output, history, spool)


def open_lab(args: argparse.Namespace):
    """The lab the state file describes, or the one `up` should build: segmented as root, else loopback."""
    from netaudit.lab.base import saved_kind
    from netaudit.lab.loopback import LoopbackLab

    from netaudit.cli.demo import segments_missing

    kind = saved_kind()
    if kind is None and args.action == "up":
        why = None if args.loopback else segments_missing(install=not args.no_install)
        if why:
            print(f"{why}: starting the loopback lab instead of network segments", file=sys.stderr)
        kind = "loopback" if args.loopback or args.hostile or why else "segments"
    if kind == "segments":
        from netaudit.lab.segments import SegmentedLab

        return SegmentedLab(ruleset=args.ruleset)
    return LoopbackLab(decoys=not args.no_decoys, peers=not args.no_peers, hostile=args.hostile, tarpits=args.tarpits)


def cmd_lab(args: argparse.Namespace) -> int:
    if args.action == "up":
        from netaudit.lab.extra import require_lab

        require_lab("`lab up`")
    lab = open_lab(args)
    if args.action == "up":
        print(f"starting the {lab.kind} lab (real TensorFlow processes; this takes a few seconds)…", file=sys.stderr)
        lab.up()
        print_lab(lab.status())
    elif args.action == "down":
        killed = lab.down()
        print("lab is down" + (f" (SIGKILL needed for: {', '.join(killed)})" if killed else ""))
    elif args.action in ("scan", "ruleset", "impair"):
        if lab.kind != "segments" or not lab.load():
            raise UsageError(f"`lab {args.action}` needs the segmented lab: run `netaudit lab up` as root first")
        if args.action == "ruleset":
            if args.name not in ("leaky", "isolated"):
                raise UsageError("lab ruleset takes leaky or isolated")
            lab.apply_ruleset(args.name)
            lab._save()
            print(f"firewall ruleset is now {args.name}")
            return EXIT_OK
        if args.name not in lab.info["vantages"]:
            raise UsageError(f"unknown vantage {args.name!r}; the lab has {', '.join(lab.info['vantages'])}")
        if args.action == "impair":
            return impair_vantage(lab, args)
        import subprocess

        from netaudit.lab.segments import scan_argv

        output = open_output(args)
        argv = lab.vantage_argv(args.name, *scan_argv(args.name, args.engine))
        out = subprocess.run(argv, capture_output=True, text=True)
        sys.stderr.write(out.stderr)
        write_output(out.stdout, output)
        return out.returncode
    else:
        status = lab.status()
        if args.targets:
            print("\n".join(e["host"] + ":" + str(e["port"]) for e in status["endpoints"]))
        else:
            print_lab(status)
    return EXIT_OK


def impair_vantage(lab, args: argparse.Namespace) -> int:
    if args.clear:
        report = lab.clear_impairment(args.name)
        print(f"{args.name}: " + (report or "was not impaired"))
        return EXIT_OK
    from netaudit.lab.impair import out_of_range

    if problem := out_of_range(args.delay, args.loss):
        raise UsageError(f"lab impair: {problem}")
    print(f"{args.name}: {lab.impair(args.name, args.delay, args.loss)}")
    return EXIT_OK


def print_lab(status: dict) -> None:
    if not status["processes"]:
        print(f"lab is down (state dir {status['dir']})")
        return
    print(f"{status['kind']} lab is {'up' if status['up'] else 'DOWN (stale state)'}; state in {status['dir']}")
    info = status.get("info") or {}
    if info.get("segments"):
        print("  segments: " + ", ".join(f"{name} {cidr} ({info['trust'][name]})" for name, cidr in info["segments"].items()))
        print(f"  firewall: nftables ruleset {info['ruleset']!r} in the router namespace; policy: {info['policy']}")
        for rule in info.get("rules", []):
            print(f"    forward: {rule}")
        print("  vantages: " + ", ".join(f"{name} {v['ip']}" for name, v in info["vantages"].items()))
        for name, how in info.get("impaired", {}).items():
            print(f"  impaired: {name}: {how}")
    for name, why in (status.get("info") or {}).get("skipped", {}).items():
        print(f"  skipped: {name} ({terminal_safe(why.splitlines()[0])})")
    alive = {p["name"]: p["alive"] for p in status["processes"]}
    for e in status["endpoints"]:
        role = f"{e['job']}:{e['task']}" if e["job"] else ""
        extra = " coordination leader" if e["coordination_leader"] else ""
        state = "running" if alive.get(e["process"]) else "stopped"
        print(f"  {e['host']}:{e['port']:<6} {e['name']:<18} expect {e['kind']:<10} {role}{extra}  [{state}]")


def cmd_report(args: argparse.Namespace) -> int:
    from netaudit.policy.k8s_policy import load_policy_spec
    from netaudit.policy.report import build_report
    from netaudit.results.load import load_scan

    from netaudit.outputs.render import shard_note

    if output_format(args) == "jsonl":
        raise UsageError("--format jsonl is the output of scan; report writes json, html, sarif, junit, prom, ocsf or "
                         "text")
    policy = load_policy_spec(args.policy) if args.policy else None
    scans = [load_scan(path) for path in args.results]
    output = open_output(args)
    history = open_history(args)
    report = build_report(scans, policy)
    for scan in report.scans:
        if scan.get("shards") and (scan["shards"]["missing"] or scan["shards"]["unfinished"]):
            print(f"netaudit: vantage {scan['vantage']}: {shard_note(scan['shards'])}: the merge is incomplete",
                  file=sys.stderr)
    from netaudit.outputs.render import as_dict

    return finish_data(as_dict(report), args, output, history)


def cmd_convert(args: argparse.Namespace) -> int:
    from netaudit.results.history import Recorded
    from netaudit.outputs.render import FORMATS
    from netaudit.results.load import load_scan_or_report

    fmt = output_format(args)
    if fmt == "jsonl":
        raise UsageError("convert writes json, html, sarif, junit, prom, ocsf or text; a jsonl stream is what it "
                         "reads")
    data = load_scan_or_report(args.result, "result")
    write_output(FORMATS[fmt](Recorded(data)), open_output(args))
    return exit_code(data, args.fail_on)


def cmd_history(args: argparse.Namespace) -> int:
    from netaudit.results.history import Recorded, Store, annotate, default_store
    from netaudit.outputs.render import to_text

    if len(args.runs) > 2 or not all(r.isdigit() for r in args.runs):
        raise UsageError("history takes no RUN (list), one RUN id (show) or two (diff)")
    path = Path(args.store) if args.store else default_store()
    if not path.exists():  # read-only: a store that is not there is not made
        if args.runs:
            raise UsageError(f"no run {args.runs[0]}: there is no history store at {path}")
        print(f"no runs (there is no history store at {path})")
        return EXIT_OK
    store = Store(path, read_only=True)
    if not args.runs:
        rows = store.runs()
        if not rows:
            print(f"no runs in {store.path}")
        for run_id, kind, vantage, started, complete, findings in rows:
            print(terminal_safe(f"{run_id:>5}  {kind:<6}  {started or '-':<20}  {vantage or '-':<24}  "
                                f"{'complete' if complete else 'INCOMPLETE':<10}  {findings} findings"))
        return EXIT_OK
    if len(args.runs) == 1:
        sys.stdout.write(to_text(Recorded(store.run(int(args.runs[0])))))
        return EXIT_OK
    old, new = (store.run(int(r)) for r in args.runs)
    annotate(new, old, f"run {args.runs[0]}", [])
    diff = new["diff"]
    print(f"run {args.runs[1]} against run {args.runs[0]}: {len(diff['new'])} new, {len(diff['persisting'])} "
          f"persisting, {len(diff['resolved'])} resolved")
    for f in new["findings"]:
        if f["state"] == "new":
            print(terminal_safe(f"  NEW       {f['severity']:<8}  {f['title']}"))
    for f in diff["resolved"]:
        print(terminal_safe(f"  RESOLVED  {f['severity']:<8}  {f['title']}"))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from netaudit.outputs.nmap_probes import export

    output = open_output(args)
    write_output(export(with_stock=args.with_stock), output, encoding="latin-1")  # the stock file's bytes
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from netaudit.cli.demo import run_demo

    return run_demo(Path(args.output), loopback=args.loopback, install=not args.no_install)


def cmd_k8s(args: argparse.Namespace) -> int:
    import json

    from netaudit.core.model import severity_rank
    from netaudit.policy.k8s_expect import default_sources, expect, load, parse_source, to_text

    output = open_output(args)
    snapshot = load(args.snapshots)
    sources = [parse_source(text, snapshot) for text in args.sources] or default_sources(snapshot)
    data = expect(snapshot, sources)
    fmt = args.format or ("json" if (args.output or "").endswith(".json") else "text")
    write_output(json.dumps(data, indent=2) + "\n" if fmt == "json" else to_text(data), output)
    if args.fail_on and any(severity_rank(f["severity"]) >= severity_rank(args.fail_on) for f in data["findings"]):
        return EXIT_FINDINGS
    return EXIT_OK


COMMANDS = {"scan": cmd_scan, "report": cmd_report, "convert": cmd_convert, "history": cmd_history, "lab": cmd_lab,
            "export": cmd_export, "k8s": cmd_k8s, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    from netaudit.core.errors import OutputError
    from netaudit.core.registry import RegistryError

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"netaudit: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("netaudit: interrupted", file=sys.stderr)
        return EXIT_INCOMPLETE
    except OutputError as exc:  # the work was done, its output could not be written; the message says where it is
        print(f"netaudit: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except RegistryError as exc:  # netaudit's own data is missing or wrong: it must not scan blind
        print(f"netaudit: broken install: {terminal_safe(str(exc))}", file=sys.stderr)
        return EXIT_INTERNAL
    except ModuleNotFoundError as exc:
        from netaudit.lab.extra import lab_modules

        if (exc.name or "").split(".")[0] in lab_modules():
            print(f"netaudit: error: {exc.name} is not installed; the lab needs: {LAB_INSTALL}", file=sys.stderr)
            return EXIT_USAGE
        print(f"netaudit: broken install: module {exc.name} is missing; reinstall it "
              f"(pip install --force-reinstall {DISTRIBUTION})", file=sys.stderr)
        return EXIT_INTERNAL
    except Exception as exc:  # exit code 4 (README, Exit codes): one line, the traceback only on request
        if os.environ.get("NETAUDIT_DEBUG"):
            raise
        from netaudit.lab.processes import LabError

        if isinstance(exc, LabError):
            print(f"netaudit: lab error: {terminal_lines(str(exc))}", file=sys.stderr)
        else:
            print(f"netaudit: internal error: {type(exc).__name__}: {terminal_safe(str(exc))} "
                  "(set NETAUDIT_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
