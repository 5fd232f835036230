"""The `callfleet` command line. Exit codes: 0 ok, 1 gates failed, 2 bad config/usage, 3 aborted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from callers.errors import ConfigError
from callers.inputs import excerpt

EXIT_OK, EXIT_GATES_FAILED, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 3
MAX_ERROR_CHARS = 400


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callfleet", description=__doc__.split(".")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start the reference agent on loopback and call it")
    demo.add_argument("--calls", type=_positive_int, default=None,
                      help="default: one call per shipped persona")
    demo.add_argument("--concurrency", type=_positive_int, default=3)
    demo.add_argument("--out", type=_out_dir, default=Path("runs"), help="parent of the run dir")
    demo.add_argument("--seed", type=_seed, default=1)
    demo.add_argument("--transport", choices=("webrtc", "twilio-ws", "pcm-ws", "sip"),
                      default="webrtc",
                      help="how the callers reach the reference agent")
    demo.add_argument("--llm-base-url", metavar="URL", default=None,
                      help="callers talk via an OpenAI-compatible LLM at URL (with --llm-model)")
    demo.add_argument("--llm-model", metavar="NAME", default=None)
    demo.add_argument("--llm-api-key-env", metavar="VAR", default=None,
                      help="environment variable holding the API key (default OPENAI_API_KEY)")
    _metrics_flags(demo)
    _no_audio_flag(demo)

    run = sub.add_parser("run", help="place the calls of a run config (configs/*.yaml)")
    run.add_argument("config", type=Path)
    run.add_argument("--out", type=_out_dir, default=Path("runs"), help="parent of the run dir")
    run.add_argument("--address", default=None, help="Ray cluster address (or RAY_ADDRESS)")
    _metrics_flags(run)
    _no_audio_flag(run)

    agent = sub.add_parser("agent", help="run the reference voice agent")
    agent.add_argument("--host", default="127.0.0.1")
    agent.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    agent.add_argument("--sip-port", type=_port, default=None,
                       help="the SIP listener's UDP port (default: the same number as --port)")
    agent.add_argument("--sip-rtp-port", type=_port, default=None, metavar="PORT",
                       help="every SIP call's RTP on this UDP port (one call at a time; "
                            "default: a free port per call)")
    agent.add_argument("--sip-rtp-advertise", default=None, metavar="IP:PORT",
                       help="SDP answers name this RTP address (an impairment relay forwarding "
                            "to --sip-rtp-port) and our RTP goes back where the caller's "
                            "comes from; needs --sip-rtp-port")
    agent.add_argument("--response-delay-ms", type=_non_negative_int, default=0,
                       help="answer this much later than usual (a planted slow agent)")
    agent.add_argument("--barge-in", choices=["stop", "ignore"], default="stop")
    agent.add_argument("--flow", choices=_flow_names(), default="card_dispute",
                       help="what the agent talks about (reference_agent/flows.py)")
    agent.add_argument("--mishear", metavar="SLOT", action="append", default=[],
                       help="hear this slot of the flow wrong, consistently (repeatable)")
    agent.add_argument("--drop-after-turns", type=_positive_int, default=None)
    agent.add_argument("--hangup", choices=("message", "close"), default="message",
                       help="how the agent hangs up: an agent-state message then close, or "
                            "just close the connection 0.5 s after its goodbye")
    agent.add_argument("--turn-log", type=Path, default=None, metavar="FILE",
                       help="append one JSON line per answered caller turn: when the caller's "
                            "sound last reached the agent and when its reply started, on the "
                            "agent's clock (reference_agent/turn_log.py)")
    agent.add_argument("--lean", action="store_true",
                       help="a cheap agent for load, soak and pacing benchmarks: no speech "
                            "recognition, its lines synthesized at start-up; it asks the flow's "
                            "questions in turn, one per caller turn, then says goodbye "
                            "(reference_agent/lean.py)")
    agent.add_argument("--processing-budget-ms", type=_non_negative_int, default=None,
                       metavar="MS",
                       help="start each reply this long after deciding the caller has "
                            "finished (600 ms of silence), plus --response-delay-ms "
                            "(default: 1300, 300 with --lean)")

    _impair_parser(sub)

    report = sub.add_parser("report", help="rebuild summary.json, report.html, junit.xml from calls.jsonl")
    report.add_argument("run_dir", type=Path)

    compare = sub.add_parser("compare", help="compare a run with a baseline run: each metric's "
                             "change with a bootstrap 95%% interval; exit 1 on a regression")
    compare.add_argument("baseline", type=Path, help="the baseline run directory")
    compare.add_argument("new", type=Path, help="the run directory to judge (gets compare.json)")
    compare.add_argument("--allow", metavar="METRIC=CHANGE", action="append", default=[],
                         help="allowed change, e.g. latency_p95_ms=+10%% or "
                              "completion_rate='-5 points' (repeatable)")
    compare.add_argument("--resamples", type=_positive_int, default=2000)
    compare.add_argument("--seed", type=_seed, default=1)

    for kind in ("personas", "scenarios"):
        data = sub.add_parser(kind, help=f"list or validate {kind[:-1]} files")
        data_sub = data.add_subparsers(dest="data_command", required=True)
        data_sub.add_parser("list", help=f"the shipped {kind}")
        validate = data_sub.add_parser("validate", help=f"check {kind[:-1]} YAML files")
        validate.add_argument("files", nargs="+", type=Path)
    return parser


def _impair_parser(sub) -> None:
    # Values are checked by orchestration/impair/command.py, so every error is one line.
    impair = sub.add_parser(
        "impair", help="relay UDP or TCP on loopback with loss, delay, jitter, reordering, "
        "duplication, a blackhole or a reset, to rehearse a bad network",
        description="Forward --listen to --to, impaired both ways (each direction with its own "
        "seeded random numbers); print the counts per direction every --stats-every seconds "
        "and at exit (Ctrl-C).")
    impair.add_argument("--listen", metavar="IP:PORT",
                        help="where the relay listens: loopback or private (port 0: any)")
    impair.add_argument("--to", metavar="IP:PORT", help="where it forwards (the real agent)")
    impair.add_argument("--udp", action="store_true", help="datagrams (RTP/RTCP media)")
    impair.add_argument("--tcp", action="store_true", help="a byte stream (WebSocket, HTTP)")
    for flag, meta, text in (
            ("--loss", "PCT", "packets lost, percent (UDP)"),
            ("--burst", "N", "mean length of a loss burst in packets (Gilbert-Elliott; "
                             "default: independent losses)"),
            ("--delay-ms", "MS", "added one-way delay"),
            ("--jitter-ms", "MS", "each packet's delay varies uniformly by up to this much"),
            ("--reorder", "PCT", "packets held back and sent after the next one (UDP)"),
            ("--duplicate", "PCT", "packets sent twice (UDP)"),
            ("--blackhole", "A:B", "from A to B seconds after start nothing gets through "
                                   "(UDP: dropped, TCP: held until B)"),
            ("--reset-at", "S", "reset each TCP connection (RST) S seconds after it opened"),
            ("--seed", "N", "random seed (default 1): the same seed, the same fates"),
            ("--stats-every", "S", "print the counts every S seconds (default 5)"),
            ("--duration", "S", "stop after S seconds (default: until Ctrl-C)")):
        impair.add_argument(flag, metavar=meta, default=None, help=text)


def _metrics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics-port", type=_port, default=None, metavar="PORT",
                        help="serve live Prometheus metrics at http://HOST:PORT/metrics while "
                             "the run goes (0 picks a free port; default: off)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                        help="address the metrics server listens on (default 127.0.0.1)")


def _no_audio_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-audio", action="store_true",
                        help="write no audio/<call_id>.wav recordings (as fleet.audio: false); "
                             "the report then has no audio players")


def _without_audio(config, no_audio: bool):
    """config with fleet.audio off when --no-audio is given."""
    if not no_audio:
        return config
    return config.model_copy(update={"fleet": config.fleet.model_copy(update={"audio": False})})


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {excerpt(text)}")
    return value


def _flow_names() -> list[str]:
    from reference_agent.flows import flow_names

    return flow_names()


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {excerpt(text)}")
    return value


def _seed(text: str) -> int:
    value = _non_negative_int(text)
    if value > 2**32 - 1:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to {2**32 - 1}, got "
                                         f"{excerpt(text)}")
    return value


def _out_dir(text: str) -> Path:
    """The parent of run directories: a directory, or a path not there yet (made later)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{excerpt(text)} is a file, expected a directory "
                                         "(the parent of run directories)")
    return path


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {excerpt(text)}") \
            from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {excerpt(text)}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors exit 2 with one line from argparse
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"callfleet: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("callfleet: interrupted", file=sys.stderr)
        return EXIT_ABORTED


def _one_line(error: Exception) -> str:
    """An error as one bounded line, whatever raised it (the messages name fields and show
    excerpts; this is the last guard against a value that slipped through whole)."""
    text = " ".join(str(error).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def _demo(args: argparse.Namespace) -> int:
    from orchestration.config import MAX_CALLS, MAX_CONCURRENCY, with_brain
    from orchestration.run import DEMO_GATES, demo_config, demo_scenarios, run_config

    for flag, value, most in (("--calls", args.calls or 0, MAX_CALLS),
                              ("--concurrency", args.concurrency, MAX_CONCURRENCY)):
        if value > most:
            raise ConfigError(f"{flag} {value}: expected at most {most:,}")
    calls = args.calls or 3 * len(demo_scenarios())  # each scenario by three personas
    config = demo_config(calls, args.concurrency, args.seed, args.transport)
    brain = _demo_brain(args)
    if brain is not None:
        config = with_brain(config, brain, where="--llm-* flags")  # a missing key fails here
    config = _without_audio(config, args.no_audio)
    return run_config(config, args.out, gates=DEMO_GATES, metrics_port=args.metrics_port,
                      metrics_host=args.metrics_host)


def _demo_brain(args: argparse.Namespace) -> dict | None:
    """The brain section the --llm-* flags ask for (None: the scripted default)."""
    given = {flag: value for flag, value in [("--llm-base-url", args.llm_base_url),
                                             ("--llm-model", args.llm_model),
                                             ("--llm-api-key-env", args.llm_api_key_env)]
             if value is not None}
    if not given:
        return None
    for flag in ("--llm-base-url", "--llm-model"):
        if flag not in given:
            raise ConfigError(f"{flag} is required with {' and '.join(given)}")
    brain = {"kind": "llm", "base_url": args.llm_base_url, "model": args.llm_model}
    if args.llm_api_key_env is not None:
        brain["api_key_env"] = args.llm_api_key_env
    return brain


def _run(args: argparse.Namespace) -> int:
    from orchestration.config import load_run_config
    from orchestration.ray_address import check_address
    from orchestration.run import run_config

    config = _without_audio(load_run_config(args.config), args.no_audio)  # errors: before calls
    # A cluster nobody answers at would hold the run in ray.init for a minute, then kill it.
    if args.address is not None:
        check_address(args.address, "--address")
    else:
        check_address(os.environ.get("RAY_ADDRESS") or None, "RAY_ADDRESS")
    return run_config(config, args.out, address=args.address, where=f"{args.config}: gates",
                      metrics_port=args.metrics_port, metrics_host=args.metrics_host)


def _agent(args: argparse.Namespace) -> int:
    from reference_agent.flows import flow_names, get_flow
    from reference_agent.main import run_agent

    # Before the speech models load. The agent serves every flow (?flow=NAME), each mishearing
    # the named slots it has: a slot no flow has is a typo.
    known = {s for name in flow_names() for s in get_flow(name).slot_names}
    unknown = [s for s in args.mishear if s not in known]
    if unknown:
        raise ConfigError(f"--mishear {unknown[0]}: not a slot of any flow; flow {args.flow} "
                          f"has {', '.join(get_flow(args.flow).slot_names)}")
    if args.lean and args.mishear:
        raise ConfigError("--mishear with --lean: a lean agent hears nothing, so it has "
                          "nothing to mishear")
    if args.sip_rtp_advertise is not None:
        from orchestration.impair.command import parse_address

        if args.sip_rtp_port in (None, 0) or args.sip_rtp_advertise.endswith(":0"):
            raise ConfigError("--sip-rtp-advertise IP:PORT needs --sip-rtp-port (where the "
                              "relay forwards the caller's RTP), both ports above 0")
        args.sip_rtp_advertise = parse_address("--sip-rtp-advertise", args.sip_rtp_advertise,
                                               listen=True)
    return asyncio.run(run_agent(args))


def _impair(args: argparse.Namespace) -> int:
    from orchestration.impair.command import run_impair

    return run_impair(args)


def _report(args: argparse.Namespace) -> int:
    from orchestration.reporting import rebuild_report

    return rebuild_report(args.run_dir)


def _compare(args: argparse.Namespace) -> int:
    from evaluation.compare import parse_allowance
    from orchestration.reporting import compare_run_dirs

    allow = {}
    for given in args.allow:
        metric, sep, change = given.partition("=")
        if not sep:
            raise ConfigError(f"--allow {given}: expected METRIC=CHANGE, e.g. latency_p95_ms=+10%")
        try:
            allow[metric.strip()] = parse_allowance(metric.strip(), change)
        except ValueError as e:
            raise ConfigError(f"--allow: {e}") from None
    return compare_run_dirs(args.baseline, args.new, allow=allow, resamples=args.resamples,
                            seed=args.seed)


def _personas(args: argparse.Namespace) -> int:
    from callers.persona import list_personas, load_persona, traits

    if args.data_command == "list":
        personas = list_personas()
        width = max(len(p.id) for p in personas)
        for p in personas:
            print(f"{p.id:{width}}  {p.display_name}  [{traits(p)}]")
        return EXIT_OK
    return _validate(args.files, load_persona)


def _scenarios(args: argparse.Namespace) -> int:
    from callers.scenario import list_scenarios, load_scenario

    if args.data_command == "list":
        scenarios = list_scenarios()
        width = max(len(s.id) for s in scenarios)
        for s in scenarios:
            facts = ", ".join(f"{name} ({spec.type})" for name, spec in s.facts.items())
            flow = f"  (reference flow: {s.flow})" if s.flow else ""
            print(f"{s.id:{width}}  {s.goal}{flow}\n{'':{width}}  facts: {facts}")
        return EXIT_OK
    return _validate(args.files, load_scenario)


def _validate(files: list[Path], load) -> int:
    failed = 0
    for path in files:
        try:
            item = load(path)
            print(f"{path}: ok ({item.id})")
        except ConfigError as e:
            print(_one_line(e), file=sys.stderr)
            failed += 1
    return EXIT_USAGE if failed else EXIT_OK


COMMANDS = {"demo": _demo, "run": _run, "agent": _agent, "report": _report, "personas": _personas,
            "scenarios": _scenarios, "compare": _compare, "impair": _impair}


if __name__ == "__main__":
    sys.exit(main())
