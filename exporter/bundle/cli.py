"""``runbook-exporter bundle generate|check|test``: profiles -> rules, routing, dashboards,
docs, and the promtool tests of the rules (``test`` runs them)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from exporter.fields import ConfigError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bundle = subparsers.add_parser(
        "bundle",
        help="generate or check the alert rules, Alertmanager routing, dashboards and "
        "runbook pages from profiles/*.yml, or from your own config (--config)",
    )
    actions = bundle.add_subparsers(dest="bundle_action", required=True)
    for name, text in (
        ("generate", "write rules/, alertmanager/, dashboards/ and docs/runbooks/"),
        ("check", "exit 1 when the committed files differ from a fresh generation"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--profiles",
            default="profiles",
            type=Path,
            help="directory of profile YAML files (default: profiles)",
        )
        action.add_argument(
            "--config",
            default=None,
            type=Path,
            metavar="FILE",
            help="an exporter config: generate the bundle of its checks (each kind's "
            "default alerts as the checks' alerts: set them) instead of the profiles",
        )
        action.add_argument(
            "--system",
            default="",
            metavar="NAME",
            help="with --config: name of the system (lower-case, digits, -); selectors "
            "add system=NAME, as a scrape config labelling its targets so sets; also the "
            "file names (default: the config file's name)",
        )
        action.add_argument(
            "--output",
            default=".",
            type=Path,
            help="directory the files are written to or compared with "
            "(default: the current directory)",
        )
        action.add_argument(
            "--docs-url",
            default=None,
            metavar="URL",
            help="base URL of the generated runbook pages (docs/runbooks/ as published "
            "where on-call can open it); every runbook_url and dashboard link is "
            "URL/<profile>.md#<alert> (default: each profile's bundle.docs_url; with "
            "--config: docs/runbooks, relative)",
        )
        if name == "generate":
            action.add_argument(
                "--drill-factor",
                type=float,
                default=1.0,
                metavar="F",
                help="multiply every `for`, evaluation interval, freshness window and "
                "group/repeat interval by F (thresholds unchanged), for drills; "
                "write to another --output",
            )
            action.add_argument(
                "--webhook-url",
                default=None,
                metavar="URL",
                help="send every receiver to this webhook instead of the real channels "
                "(drills); routes, grouping and inhibitions stay as generated",
            )
    test = actions.add_parser(
        "test",
        help="run promtool on the generated unit tests (rules/tests/*.test.yml): every "
        "alert silent just short of its threshold, firing just past it once `for` elapses",
    )
    test.add_argument(
        "--output",
        default=".",
        type=Path,
        help="directory holding rules/ and rules/tests/ (default: the current directory)",
    )
    test.add_argument(
        "--promtool",
        default=None,
        metavar="PATH",
        help="the promtool binary (default: promtool on PATH)",
    )
    test.add_argument(
        "--mutate",
        action="store_true",
        help="also prove the tests pin each alert of --profiles: its "
        "threshold moved 5%% (1%%) toward quiet, 1%% toward firing, its `for` "
        "one evaluation longer must each fail them",
    )
    test.add_argument(
        "--profiles",
        default="profiles",
        type=Path,
        help="with --mutate: directory of profile YAML files (default: profiles)",
    )


def run(args: argparse.Namespace) -> int:  # noqa: C901 - one branch per bundle action and flag combination (generate, check, test, --config)
    if args.bundle_action == "test":
        return run_tests(args)
    if getattr(args, "config", None) is not None:
        return _run_config(args)
    # The generator is imported when a bundle command runs, not when the command line is
    # parsed: a serving exporter builds the same parser and must not load it (bench:
    # footprint).
    from exporter.bundle.generate import generate, stale, write
    from exporter.bundle.profile import load_profiles

    try:
        profiles = load_profiles(args.profiles)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    if args.docs_url:
        profiles = [replace(p, docs_url=args.docs_url.rstrip("/")) for p in profiles]
    drill_factor = getattr(args, "drill_factor", 1.0)
    webhook_url = getattr(args, "webhook_url", None)
    if not drill_factor > 0:
        print(f"--drill-factor must be above 0, got {drill_factor}", file=sys.stderr)
        return 2
    if (drill_factor != 1.0 or webhook_url) and args.output.resolve() == Path.cwd():
        print("a drill bundle differs from the committed one: give --output DIR", file=sys.stderr)
        return 2
    files = generate(profiles, drill_factor=drill_factor, webhook_url=webhook_url)
    if args.bundle_action == "generate":
        changed = write(files, args.output)
        print(f"{len(files)} files from {len(profiles)} profiles, {len(changed)} changed")
        return 0
    differing = stale(files, args.output)
    if differing:
        print(
            "generated files differ from profiles/ (run `runbook-exporter bundle generate`):",
            file=sys.stderr,
        )
        for path in differing:
            print(f"  {path}", file=sys.stderr)
        return 1
    print(f"{len(files)} generated files match {len(profiles)} profiles")
    return 0


def _run_config(args: argparse.Namespace) -> int:
    """``--config FILE``: the bundle of one exporter config, written or compared."""
    from exporter.bundle.defaults import bundle_files, drilled, load_config_bundle
    from exporter.bundle.generate import stale, write

    drill_factor = getattr(args, "drill_factor", 1.0)
    if not drill_factor > 0:
        print(f"--drill-factor must be above 0, got {drill_factor}", file=sys.stderr)
        return 2
    try:
        bundle = load_config_bundle(args.config, system=args.system, docs_url=args.docs_url or "")
    except ConfigError as exc:
        for problem in exc.problems:
            print(
                problem if problem.startswith(str(args.config)) else f"{args.config}: {problem}",
                file=sys.stderr,
            )
        return 2
    if drill_factor != 1.0:
        bundle = drilled(bundle, drill_factor)
    files = bundle_files(bundle, webhook_url=getattr(args, "webhook_url", None))
    alerts = len(bundle.profile.alerts)
    if args.bundle_action == "generate":
        changed = write(files, args.output)
        print(
            f"{len(files)} files, {alerts} alerts for {len(bundle.config.checks)} checks "
            f"of {args.config}, {len(changed)} changed"
        )
        return 0
    differing = [path for path in stale(files, args.output) if path in files]
    if differing:
        print(
            f"generated files differ from {args.config} (run `runbook-exporter bundle "
            f"generate --config {args.config}`):",
            file=sys.stderr,
        )
        for path in differing:
            print(f"  {path}", file=sys.stderr)
        return 1
    print(f"{len(files)} generated files match {args.config}")
    return 0


PROMTOOL_MISSING = (
    "promtool not found{where}: it ships with Prometheus (Debian/Ubuntu: apt-get install "
    "prometheus; or the prometheus-*.tar.gz release from https://prometheus.io/download/); "
    "put it on PATH or give --promtool PATH"
)


def run_tests(args: argparse.Namespace) -> int:
    """``bundle test``: promtool test rules on every rules/tests/*.test.yml under --output
    (promtool prints each file's result); with --mutate, the mutation test of --profiles."""
    import shutil

    promtool = args.promtool or shutil.which("promtool")
    if not promtool or shutil.which(promtool) is None:
        where = f" at {args.promtool}" if args.promtool else " on PATH"
        print(PROMTOOL_MISSING.format(where=where), file=sys.stderr)
        return 2
    from exporter.bundle.promtests import TESTS_DIR

    files = sorted((args.output / TESTS_DIR).glob("*.test.yml"))
    if not files:
        print(
            f"{args.output / TESTS_DIR}: no *.test.yml (run `runbook-exporter bundle "
            "generate` first)",
            file=sys.stderr,
        )
        return 2
    failed = _promtool_in_parallel(promtool, files)
    if failed or not args.mutate:
        return 1 if failed else 0
    return _mutate(promtool, args.profiles)


def _promtool_in_parallel(promtool: str, files: list[Path]) -> bool:
    """``promtool test rules`` over ``files`` in parallel (exporter.bundle.promtests),
    each process's output printed whole. True when any test failed."""
    from exporter.bundle.promtests import promtool_in_parallel

    failed, out, err = promtool_in_parallel(promtool, files)
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.stdout.flush()
    return failed


def _mutate(promtool: str, directory: Path) -> int:
    import tempfile

    from exporter.bundle.mutations import counts, mutations, survivors
    from exporter.bundle.profile import load_profiles

    try:
        profiles = load_profiles(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    mutants = mutations(profiles)
    with tempfile.TemporaryDirectory(prefix="bundle-mutants-") as scratch:
        survived = survivors(promtool, mutants, Path(scratch))
    alerts, guarded = counts(profiles)
    print(
        f"{len(mutants)} mutants of {alerts} alerts and {guarded} missing-data guards: "
        f"{len(survived)} survived"
    )
    for mutant in survived:
        print(
            f"  survived: {mutant.alert} ({mutant.profile}): {mutant.kind}, {mutant.what}",
            file=sys.stderr,
        )
    return 1 if survived else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runbook-exporter")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))
