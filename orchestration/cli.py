"""The `callfleet` command line. Exit codes: 0 ok, 1 gates failed, 2 bad config/usage, 3 aborted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from callers.errors import ConfigError

EXIT_OK, EXIT_GATES_FAILED, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callfleet", description=__doc__.split(".")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start the reference agent on loopback and call it")
    demo.add_argument("--calls", type=_positive_int, default=None,
                      help="default: one call per shipped persona")
    demo.add_argument("--concurrency", type=_positive_int, default=3)
    demo.add_argument("--out", type=Path, default=Path("runs"), help="parent of the run dir")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--transport", choices=("webrtc", "twilio-ws", "pcm-ws"), default="webrtc",
                      help="how the callers reach the reference agent")
    demo.add_argument("--llm-base-url", metavar="URL", default=None,
                      help="callers talk via an OpenAI-compatible LLM at URL (with --llm-model)")
    demo.add_argument("--llm-model", metavar="NAME", default=None)
    demo.add_argument("--llm-api-key-env", metavar="VAR", default=None,
                      help="environment variable holding the API key (default OPENAI_API_KEY)")

    run = sub.add_parser("run", help="place the calls of a run config (configs/*.yaml)")
    run.add_argument("config", type=Path)
    run.add_argument("--out", type=Path, default=Path("runs"), help="parent of the run dir")
    run.add_argument("--address", default=None, help="Ray cluster address (or RAY_ADDRESS)")

    agent = sub.add_parser("agent", help="run the reference voice agent")
    agent.add_argument("--host", default="127.0.0.1")
    agent.add_argument("--port", type=int, default=8080, help="0 picks a free port")
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

    report = sub.add_parser("report", help="rebuild summary.json, report.html, junit.xml from calls.jsonl")
    report.add_argument("run_dir", type=Path)

    for kind in ("personas", "scenarios"):
        data = sub.add_parser(kind, help=f"list or validate {kind[:-1]} files")
        data_sub = data.add_subparsers(dest="data_command", required=True)
        data_sub.add_parser("list", help=f"the shipped {kind}")
        validate = data_sub.add_parser("validate", help=f"check {kind[:-1]} YAML files")
        validate.add_argument("files", nargs="+", type=Path)
    return parser


def _flow_names() -> list[str]:
    from reference_agent.flows import flow_names

    return flow_names()


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
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
        print(f"callfleet: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("callfleet: interrupted", file=sys.stderr)
        return EXIT_ABORTED


def _demo(args: argparse.Namespace) -> int:
    from orchestration.config import with_brain
    from orchestration.run import DEMO_GATES, demo_config, run_config

    from callers.scenario import list_scenarios

    calls = args.calls or 3 * len(list_scenarios())  # each scenario by three personas
    config = demo_config(calls, args.concurrency, args.seed, args.transport)
    brain = _demo_brain(args)
    if brain is not None:
        config = with_brain(config, brain, where="--llm-* flags")  # a missing key fails here
    return run_config(config, args.out, gates=DEMO_GATES)


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
    from orchestration.run import run_config

    config = load_run_config(args.config)  # every config error surfaces before any call
    return run_config(config, args.out, address=args.address, where=f"{args.config}: gates")


def _agent(args: argparse.Namespace) -> int:
    from reference_agent.flows import get_flow
    from reference_agent.main import run_agent

    slots = get_flow(args.flow).slot_names  # before the speech models load
    unknown = [s for s in args.mishear if s not in slots]
    if unknown:
        raise ConfigError(f"--mishear {unknown[0]}: not a slot of flow {args.flow}; expected "
                          f"one of {', '.join(slots)}")
    return asyncio.run(run_agent(args))


def _report(args: argparse.Namespace) -> int:
    from orchestration.reporting import rebuild_report

    return rebuild_report(args.run_dir)


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
            print(e, file=sys.stderr)
            failed += 1
    return EXIT_USAGE if failed else EXIT_OK


COMMANDS = {"demo": _demo, "run": _run, "agent": _agent, "report": _report, "personas": _personas,
            "scenarios": _scenarios}


if __name__ == "__main__":
    sys.exit(main())
