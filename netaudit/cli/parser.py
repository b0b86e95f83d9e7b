"""The command line's grammar: one function per subcommand adds its parser, its options and their help.
The library is imported only where help text reads it (the registry's families), so `netaudit --help`
stays fast; the commands themselves are in netaudit/cli/main.py."""

from __future__ import annotations

import argparse
from typing import Any

from netaudit import LAB_INSTALL
from netaudit.core.errors import EXIT_OK, EXIT_USAGE
from netaudit.core.model import SEVERITIES
from netaudit.discovery.engines import ENGINES
from netaudit.outputs.formats import FORMATS, WHOLE

MAX_WORKERS = 64  # scan --workers N: scan processes on one host

SEVERITY_CHOICES = tuple(reversed(SEVERITIES))  # most severe first, as --help lists them

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


Subcommands = Any  # argparse's _SubParsersAction, which it does not export


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


def add_output_options(p: argparse.ArgumentParser, formats: tuple[str, ...] = WHOLE) -> None:
    extra = (" jsonl writes each endpoint as it is finished, so an interrupted or killed scan keeps what it "
             "found; convert and report build the other formats from it. Every format of a scan is written from "
             "one spooled stream, so memory stays flat on large sweeps in all of them.") if "jsonl" in formats else ""
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
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def add_scan(sub: Subcommands) -> None:
    scan = sub.add_parser("scan", help="scan targets from where this process runs (one vantage)",
                          description="Discover open ports, fingerprint TF servers with read-only RPCs, and report "
                          "findings. Probes never change a server's state.",
                          epilog=families_help() + SCAN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("targets", nargs="*", metavar="TARGET", help="what to scan (see targets below)")
    scan.add_argument("-p", "--ports", default="tf", metavar="SPEC",
                      help="ports: 2222,8500-8501 or the named set 'tf' (default), or a mix")
    scan.add_argument("--engine", choices=tuple(ENGINES),
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
    add_output_options(scan, tuple(FORMATS))
    add_history_options(scan)


def add_lab(sub: Subcommands) -> None:
    lab = sub.add_parser("lab", help="the built-in lab: real TF servers in network segments (root) or on loopback",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Start, stop, inspect or scan from the built-in lab. As root, `up` builds "
                         "network namespaces in 198.18.0.0/15 (segments cluster, apps, corp, edge) joined by a router "
                         "whose nftables ruleset plays the VPC firewall, with a TF cluster and a ModelServer in "
                         "`cluster`. `up --cluster` (root) plays a Kubernetes cluster instead: namespaces as pods "
                         "of a TFJob, a TF Serving Deployment and a KServe predictor, NetworkPolicies in the snapshot "
                         "it writes, and a node firewall that ignores them (flannel) or enforces them (enforcing); "
                         "`lab scan` then runs `scan k8s: --policy k8s:` from a vantage pod. Without root (or with "
                         "--loopback) it starts the loopback lab on 127.0.0.1: TF clusters, a ModelServer, TLS variants and decoys. `up --hostile` adds hostile servers on "
                         "127.0.0.1 (tarpits, drips, HTTP/2 floods, oversized, invalid and compressed-bomb gRPC "
                         "replies, resets, endless HTTP, TLS garbage and stalls, escape sequences in every field: "
                         "see netaudit/lab/hostile.py) to check that no server can crash, stall, bloat or spoof a "
                         f"scan. Needs: {LAB_INSTALL}.",
                         epilog="examples:\n  netaudit lab up\n  netaudit lab up --loopback --hostile --tarpits 100\n"
                                "  netaudit lab scan edge -o edge.json\n"
                                "  netaudit lab up --cluster && netaudit lab scan apps -o apps.json\n"
                                "  netaudit lab ruleset enforcing\n"
                                "  netaudit lab ruleset isolated\n  netaudit lab impair edge --delay 200 --loss 10\n"
                                "  netaudit lab impair edge --clear\n  netaudit lab down")
    lab.add_argument("action", choices=["up", "down", "status", "scan", "ruleset", "impair"],
                     help="scan VANTAGE: scan the cluster segment from that segment (the cluster lab: the snapshot's "
                     "workloads from that pod, against its NetworkPolicies); ruleset NAME: swap the firewall; "
                     "impair VANTAGE: packet loss and delay on that host's link (tc netem, or a delay line where "
                     "the kernel has no netem)")
    lab.add_argument("name", nargs="?", metavar="VANTAGE|RULESET", help="for scan, impair and ruleset")
    lab.add_argument("--targets", action="store_true", help="status: print only host:port lines, for `netaudit scan -`")
    lab.add_argument("--no-decoys", action="store_true", help="up, loopback lab: start no decoys")
    lab.add_argument("--no-peers", action="store_true",
                     help="up, loopback lab: leave out KServe, MLServer, Triton and TensorBoard (faster)")
    lab.add_argument("--loopback", action="store_true", help="up: the loopback lab even as root")
    lab.add_argument("--cluster", action="store_true",
                     help="up: the lab that plays a Kubernetes cluster (root; see docs/kubernetes.md)")
    lab.add_argument("--no-install", action="store_true",
                     help="up: as root, do not apt-get install missing lab packages (iproute2, nftables, procps)")
    lab.add_argument("--hostile", action="store_true",
                     help="up, loopback lab: also start the hostile servers (one process, 127.0.0.1 only)")
    lab.add_argument("--tarpits", type=non_negative_int, default=0, metavar="N",
                     help="up --hostile: this many extra tarpit ports (default 0)")
    lab.add_argument("--ruleset", choices=["leaky", "isolated", "flannel", "enforcing"],
                     help="up: the firewall to start with; segmented lab: leaky (default: realistic mistakes) or "
                          "isolated; cluster lab: flannel (default: NetworkPolicies ignored) or enforcing")
    lab.add_argument("--engine", choices=tuple(ENGINES),
                     help="scan: discovery engine (default as for scan: syn as root on IPv4)")
    lab.add_argument("-o", "--output", metavar="FILE", help="scan: write the JSON result here (default stdout)")
    lab.add_argument("--delay", type=int, default=200, metavar="MS", help="impair: added delay (default 200 ms)")
    lab.add_argument("--loss", type=float, default=10.0, metavar="PCT",
                     help="impair: percent of packets lost each way (default 10)")
    lab.add_argument("--clear", action="store_true", help="impair: remove the vantage's impairment")


def add_report(sub: Subcommands) -> None:
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


def add_convert(sub: Subcommands) -> None:
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


def add_history(sub: Subcommands) -> None:
    history = sub.add_parser("history", help="past runs, one run, or the diff between two",
                             description="List the runs in the history store, show one, or diff two: which "
                             "findings are new, persisting and resolved.")
    history.add_argument("runs", nargs="*", metavar="RUN", help="no RUN: list; one: show it; two: diff them")
    history.add_argument("--store", metavar="PATH", help="the history store (default as for scan)")


def add_export(sub: Subcommands) -> None:
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


def add_k8s(sub: Subcommands) -> None:
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


def add_demo(sub: Subcommands) -> None:
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


# In the order `netaudit --help` lists them.
SUBCOMMANDS = (add_scan, add_lab, add_report, add_convert, add_history, add_export, add_k8s, add_demo)
