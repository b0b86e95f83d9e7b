"""The netaudit commands: each takes the parsed options (netaudit/cli/parser.py) and calls the library;
heavy imports wait until a command needs them, so `netaudit --help` stays fast."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netaudit import DISTRIBUTION, LAB_INSTALL
from netaudit.cli.parser import MAX_WORKERS, build_parser
from netaudit.core.errors import (EXIT_FINDINGS, EXIT_INCOMPLETE, EXIT_INTERNAL, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE,
                                  UsageError)
from netaudit.core.textsafe import terminal_lines, terminal_safe
from netaudit.outputs.formats import BY_SUFFIX


def write_output(text: str, output, encoding: str = "utf-8") -> None:
    """`output` is an Output opened (and so checked) before the work; latin-1 writes back bytes that were
    read as latin-1 unchanged."""
    from netaudit.outputs.destination import write_text

    write_text(text, output, encoding)


def open_output(args: argparse.Namespace):
    from netaudit.outputs.destination import Output

    return Output.open(args.output)


def exit_code(data: dict, fail_on: str | None, fail_on_new: str | None = None) -> int:
    from netaudit.results.accept import gating
    from netaudit.core.model import severity_rank

    if not data["complete"]:
        return EXIT_INCOMPLETE
    for threshold, only_new in ((fail_on, False), (fail_on_new, True)):
        if threshold and any(severity_rank(f["severity"]) >= severity_rank(threshold)
                             for f in gating(data["findings"], only_new)):
            return EXIT_FINDINGS
    return EXIT_OK


def output_format(args: argparse.Namespace) -> str:
    return args.format or (BY_SUFFIX.get(Path(args.output).suffix.lower()) if args.output else None) or "text"


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
        from netaudit.results.diff import annotate
        from netaudit.results.history import scope_key

        baseline, label = self.baseline, self.label
        if baseline is None and self.store is not None:
            previous = self.store.previous(scope_key(data))
            if previous is not None:
                baseline, label = self.store.run(previous), f"run {previous}"
        annotate(data, baseline, label, self.accepted)


def open_history(args: argparse.Namespace) -> RunHistory:
    from netaudit.results.accept import load_accept_list
    from netaudit.results.history import Store, default_store
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
    from netaudit.outputs.formats import FORMATS
    from netaudit.results.spool import SpoolError

    fmt = output_format(args)
    history.annotate(data)
    whole = data
    try:
        with recorded(history, data):
            whole = spool.view(data) if spool is not None else data
            write_output(FORMATS[fmt](Recorded(whole)), output)
    except SpoolError:
        raise  # the result is in the spool that failed: there is nothing to keep elsewhere
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
        vantage, segment, why = policy.locate(targets, args.vantage)
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
    """The lab the state file describes, or the one `up` should build: --cluster, segmented as root, else
    loopback. `up` while a lab is up says so before anything starts; what a dead lab left is cleared."""
    from netaudit.lab.base import LAB_KINDS, default_state_dir, lab_class, saved_kind

    from netaudit.cli.demo import segments_missing

    kind, fallback = saved_kind(), None
    if kind is not None and kind not in LAB_KINDS:
        raise UsageError(f"{default_state_dir()} holds the state of an unknown lab kind {kind!r} (written by another "
                         "netaudit release?); remove that folder's state.json, then try again")
    if args.action == "up":
        if args.cluster and args.loopback:
            raise UsageError("lab up takes --cluster or --loopback, not both")
        if kind is not None:
            saved = lab_class(kind)()
            if saved.status()["up"] or saved.namespaces:
                raise UsageError(f"the {kind} lab is already up (state in {saved.dir}); run `netaudit lab down` "
                                 "first")
            saved.down()  # what a lab that died left behind, so the one asked for starts clean
        if args.cluster:
            if why := segments_missing(install=not args.no_install):
                raise UsageError(f"lab up --cluster needs root with ip and nft ({why})")
            kind = "cluster"
        else:
            fallback = None if args.loopback else segments_missing(install=not args.no_install)
            kind = "loopback" if args.loopback or args.hostile or fallback else "segments"
    kind = kind or "loopback"
    cls = lab_class(kind)
    if args.action != "up":
        return cls()
    if args.ruleset and args.ruleset not in cls.rulesets:
        raise UsageError(f"--ruleset {args.ruleset}: the {kind} lab " + (
            f"takes {' or '.join(cls.rulesets)}" if cls.rulesets else "has no firewall")
            + (f" ({fallback}: the loopback lab instead of network segments)" if fallback else ""))
    if fallback:
        print(f"{fallback}: starting the loopback lab instead of network segments", file=sys.stderr)
    if kind == "loopback":
        return cls(decoys=not args.no_decoys, peers=not args.no_peers, hostile=args.hostile, tarpits=args.tarpits)
    return cls(ruleset=args.ruleset) if args.ruleset else cls()


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
        if not lab.rulesets or not lab.load():
            raise UsageError(f"`lab {args.action}` needs the segmented or the cluster lab: run `netaudit lab up` "
                             "(or `lab up --cluster`) as root first")
        if args.action == "ruleset":
            if args.name not in lab.rulesets:
                raise UsageError(f"the {lab.kind} lab's rulesets are {' and '.join(lab.rulesets)}")
            lab.apply_ruleset(args.name)
            lab._save()
            print(f"firewall ruleset is now {args.name}")
            return EXIT_OK
        if args.name not in lab.info["vantages"]:
            raise UsageError(f"unknown vantage {args.name!r}; the lab has {', '.join(lab.info['vantages'])}")
        if args.action == "impair":
            if lab.kind != "segments":
                raise UsageError("`lab impair` needs the segmented lab")
            return impair_vantage(lab, args)
        import subprocess

        output = open_output(args)
        argv = lab.vantage_argv(args.name, *lab.scan_argv(args.name, args.engine))
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
    elif info.get("pod_net"):
        print(f"  pods: {info['pod_net']} routed through the node namespace; snapshot: {info.get('snapshot')}")
        print(f"  firewall: {info.get('ruleset')!r} on the node (flannel ignores NetworkPolicy, enforcing applies it)")
        print("  vantages: " + ", ".join(f"{name} (pod {v['pod']})" for name, v in info["vantages"].items()))
    for name, why in (status.get("info") or {}).get("skipped", {}).items():
        print(f"  skipped: {name} ({terminal_safe(why)})")
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
    from netaudit.outputs.formats import FORMATS
    from netaudit.results.load import load_scan_or_report, spool_stream
    from netaudit.results.spool import Spool
    from netaudit.results.stream import is_stream

    fmt = output_format(args)
    if fmt == "jsonl":
        raise UsageError("convert writes json, html, sarif, junit, prom, ocsf or text; a jsonl stream is what it "
                         "reads")
    if not is_stream(args.result):
        data = load_scan_or_report(args.result, "result")
        write_output(FORMATS[fmt](Recorded(data)), open_output(args))
        return exit_code(data, args.fail_on)
    with Spool() as spool:  # a stream is written as a scan writes it: from a spool, never held whole
        summary = spool_stream(args.result, spool)
        write_output(FORMATS[fmt](Recorded(spool.view(summary))), open_output(args))
    return exit_code(summary, args.fail_on)


def cmd_history(args: argparse.Namespace) -> int:
    from netaudit.results.diff import annotate
    from netaudit.results.history import Recorded, Store, default_store
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
    """Every way out, --help and argparse's own exits included, ends with standard output flushed here:
    what is still buffered for a reader that left (`netaudit … | head`) or a full device is one line and
    exit 5, not a message from the interpreter's teardown and exit 120."""
    try:
        code = _run(argv)
    except SystemExit as exc:  # argparse: --help, --version, a usage error
        code = exc.code if isinstance(exc.code, int) else EXIT_OK if exc.code is None else EXIT_USAGE
    try:
        sys.stdout.flush()
    except OSError as exc:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the leftover bytes go nowhere, quietly
        if code != EXIT_OUTPUT:  # not already said by the OutputError that made it
            print(f"netaudit: error: cannot write standard output: {exc.strerror}", file=sys.stderr)
        return EXIT_OUTPUT
    return code


def _run(argv: list[str] | None) -> int:
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
    except BrokenPipeError:  # a print() to a reader that left; main() sends what is still buffered nowhere
        print("netaudit: error: cannot write standard output: Broken pipe", file=sys.stderr)
        return EXIT_OUTPUT
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
