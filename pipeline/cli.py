"""The `mlops` command.

Only the standard library is imported at module level so that `mlops --help`
stays fast; each subcommand imports what it needs when it runs. User errors
(ConfigError and the other *Error classes listed in USER_ERRORS) end with one
line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's user-error shape: one line on stderr, exit code 2.

    argparse prints the whole usage before its message; the message already names the argument,
    and the fix is the command's --help. (add_subparsers makes every subcommand this class too.)
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(
            EXIT_USER_ERROR, f"error: {self.prog}: {message}. Fix: see `{self.prog} --help`\n"
        )


def _add_env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env",
        default=None,
        help="environment overlay in config/env/ (default: $MLOPS_ENV or dev)",
    )


def _cmd_config_show(args: argparse.Namespace) -> int:
    from pipeline.config import load_config

    cfg = load_config(args.env)
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(cfg.as_dict(), indent=2, sort_keys=True))
        return 0
    print(f"environment: {cfg.env}   (from {', '.join(cfg.files)})")
    print("\nnames:")
    for kind, name in cfg.names.items():
        print(f"  {kind:<22} {name}")
    print("\ndata:")
    for key, uri in cfg.data_uris.items():
        print(f"  {key:<22} {uri}")
    print("\nsettings:")
    import yaml

    text = yaml.safe_dump(cfg.settings.model_dump(mode="json"), sort_keys=False)
    print("\n".join("  " + line for line in text.splitlines()))
    return 0


def _environments(env: str | None) -> list[str]:
    """The named environment, or every overlay in config/env/ when none is named."""
    if env:
        return [env]
    from pipeline.config import OVERLAY_DIR, find_config_dir

    return sorted(p.stem for p in (find_config_dir() / OVERLAY_DIR).glob("*.yaml")) or ["dev"]


def _cmd_render(args: argparse.Namespace) -> int:
    from pipeline import workflow
    from pipeline.config import load_config

    stale = 0
    for env in _environments(args.env):
        cfg = load_config(env)
        path = workflow.asl_path(cfg)
        if args.check:
            diff = workflow.check(cfg)
            if diff:
                stale += 1
                sys.stdout.write(diff)
                print(
                    f"error: {path.name} is stale. Fix: run `mlops render` and commit it",
                    file=sys.stderr,
                )
            else:
                print(f"{path.name} is current")
        else:
            path.write_text(workflow.render(cfg))
            print(
                f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}"
            )
    return 1 if stale else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline import validate, workflow
    from pipeline.config import load_config

    paths = (
        [Path(args.file)]
        if args.file
        else [workflow.asl_path(load_config(e)) for e in _environments(args.env)]
    )
    failures = 0
    for path in paths:
        findings = validate.validate_definition(validate.load_definition(path), path)
        for finding in findings:
            print(f"error: {finding}", file=sys.stderr)
        if findings:
            failures += 1
        else:
            print(f"{path.name}: valid")
    return 1 if failures else 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from pipeline import graph
    from pipeline.config import load_config

    readme = Path(args.readme)
    current, updated = graph.diagram_update(readme, load_config(args.env or "dev"))
    if args.check:
        if updated != current:
            print(
                f"error: the diagram in {readme} is stale. Fix: run `mlops graph` and commit",
                file=sys.stderr,
            )
            return 1
        print(f"{readme}: diagram is current")
        return 0
    readme.write_text(updated)
    print(f"updated the diagram in {readme}")
    return 0


def _cmd_stack(args: argparse.Namespace) -> int:
    from pipeline import stack
    from pipeline.config import load_config

    cfg = load_config(args.env)
    doc = stack.bootstrap_template(cfg, args.github_repo) if args.bootstrap else stack.template(cfg)
    text = stack.to_json(doc)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_lint_stack(args: argparse.Namespace) -> int:
    import tempfile

    from pipeline import policy_lint, stack
    from pipeline.config import load_config

    findings: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for env in _environments(args.env):
            cfg = load_config(env)
            for kind, doc in (
                ("main", stack.template(cfg)),
                ("bootstrap", stack.bootstrap_template(cfg, "owner/repo")),
            ):
                path = Path(tmp) / f"{env}-{kind}.json"
                path.write_text(stack.to_json(doc))
                paths.append(path)
                findings += [
                    f"{env} {kind} template: {f}" for f in policy_lint.parliament_findings(doc)
                ]
        findings += policy_lint.cfn_lint(paths)
    for finding in findings:
        print(f"error: {finding}", file=sys.stderr)
    if not findings:
        print("templates and IAM policies: no findings (cfn-lint, parliament)")
    return 1 if findings else 0


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    from pipeline import deploy
    from pipeline.config import ConfigError, load_config

    cfg = load_config(args.env)
    repo = args.github_repo or cfg.settings.project.github_repo
    if not repo:
        raise ConfigError(
            "--github-repo: not given, and project.github_repo is not set in config/project.yaml. "
            "Fix: pass --github-repo OWNER/REPO, or set it with `mlops init --github-repo OWNER/REPO`"
        )
    result = deploy.bootstrap(cfg, repo, args.oidc_provider_arn)
    print(f"{result.stack}: {result.status}")
    for key, value in sorted(result.outputs.items()):
        print(f"  {key}: {value}")
    print(
        "next: set the repository variable AWS_DEPLOY_ROLE_ARN to DeployRoleArn, "
        f"then `mlops deploy --env {cfg.env}`"
    )
    return 0


def _cmd_deploy(args: argparse.Namespace) -> int:
    from pipeline import deploy
    from pipeline.config import load_config

    cfg = load_config(args.env)
    result = deploy.deploy(cfg)
    if result.status == "NO_CHANGES":
        print(f"{result.stack}: no changes, nothing deployed")
    else:
        print(f"{result.stack}: {result.status}")
    print(f"code: {len(result.uploaded)} bundle(s) uploaded, {len(result.reused)} unchanged")
    return 0


def _print_state(event: str, state: str, seconds: float | None) -> None:
    if state.endswith(" failed"):
        return
    if event == "entered":
        print(f"  -> {state}", flush=True)
    else:
        print(f"  ok {state} ({seconds:.1f}s)", flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline import run, validate, workflow
    from pipeline.config import load_config

    cfg = load_config(args.env)
    arn, started = run.start(cfg, args.data, args.commit)
    name = arn.rsplit(":", 1)[-1]
    if not args.json:
        print(f"{'started' if started else 'found existing'} execution {name}", flush=True)
    if not args.wait:
        if args.json:
            print(json.dumps({"execution_arn": arn, "started": started}))
        return 0
    summary = run.follow(cfg, arn, None if args.json else _print_state)
    summary.existing = not started
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2, sort_keys=True, default=str))
    else:
        print(run.text(summary))
    if args.summary_md:
        definition = validate.load_definition(workflow.asl_path(cfg))
        with open(args.summary_md, "a") as fh:
            fh.write(run.markdown(summary, definition))
    return 0 if summary.ok else 1


def _cmd_models(args: argparse.Namespace) -> int:
    from pipeline import registry
    from pipeline.config import load_config

    cfg = load_config(args.env)
    listing = registry.list_models(cfg)
    if args.json:
        print(json.dumps(listing, indent=2, sort_keys=True, default=str))
        return 0
    metric = cfg.settings.gate.metric
    print(f"{'':2}{'version':>7}  {'status':<11} {metric:>9}  {'data':<16} {'commit':<14} created")
    for m in listing["models"]:
        mark = "*" if m["version"] == listing["production"] else " "
        value = m.get("metrics", {}).get(metric)
        shown = f"{value:.4f}" if isinstance(value, int | float) else "-"
        print(
            f"{mark} {m['version']:>7}  {m['status']:<11} {shown:>9}  {m.get('data_version', '-'):<16} "
            f"{str(m.get('commit', '-'))[:14]:<14} {m.get('created_at', '-')}"
        )
    if not listing["models"]:
        print("  (no models yet)")
    print(f"production: v{listing['production']}" if listing["production"] else "production: none")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from pipeline import registry
    from pipeline.config import load_config

    cfg = load_config(args.env)
    result = registry.rollback(cfg, args.version)
    print(
        f"production: v{result['from']} -> v{result['to']} (endpoint config {result['endpoint_config']})"
    )
    return 0


def _cmd_data_push(args: argparse.Namespace) -> int:
    from pipeline import data
    from pipeline.config import load_config

    cfg = load_config(args.env)
    prefix, keys = data.push(cfg, Path(args.path), args.drop)
    print(f"uploaded {len(keys)} file(s) to s3://{cfg.names['bucket']}/{prefix}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from pipeline import data
    from pipeline.config import load_config

    cfg = load_config(args.env)
    if args.file and not Path(args.file).is_file():
        raise data.DataError(f"{args.file}: no such file. Fix: pass --file with a CSV or JSON body")
    body = Path(args.file).read_text() if args.file else sys.stdin.read()
    print(data.predict(cfg, body, args.content_type))
    return 0


def _cmd_local(args: argparse.Namespace) -> int:
    from pipeline.localcloud import server

    if args.local_command == "up":
        info = server.up(args.port)
        print(f"local cloud up at {info['url']} (pid {info['pid']}, log {info['log']})")
        print(
            f"use it with: export AWS_ENDPOINT_URL={info['url']} AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local"
        )
    elif args.local_command == "down":
        print("local cloud stopped" if server.down() else "local cloud was not running")
    else:
        info = server.status()
        print(
            f"local cloud up at {info['url']} (pid {info['pid']})"
            if info
            else "local cloud is not running"
        )
        return 0 if info else 1
    return 0


def _cmd_dry_run(args: argparse.Namespace) -> int:
    from pipeline import dryrun, run
    from pipeline.config import load_config

    cfg = load_config(args.env)
    drop = Path(args.data) if args.data else cfg.root / "data" / "sample" / "drop-001"
    if not drop.is_dir():
        raise run.RunError(
            f"--data {drop}: no such folder. Fix: pass a drop folder such as data/sample/drop-001"
        )
    base = dryrun.load_summary(Path(args.compare)) if args.compare else None
    commit = args.commit or run.git_commit(cfg.root)
    print(f"dry run of {commit[:12]} on {drop} in a throwaway local cloud", flush=True)
    summary = dryrun.dry_run(
        cfg, drop, commit, _print_state, say=lambda m: print(f"  {m}", flush=True)
    )
    print(run.text(summary))
    if args.json:
        Path(args.json).write_text(
            json.dumps(summary.as_dict(), indent=2, sort_keys=True, default=str)
        )
    if args.summary_md:
        with open(args.summary_md, "a") as fh:
            fh.write(dryrun.comparison_markdown(summary.as_dict(), base, drop.name))
    return 0 if summary.ok else 1


def _cmd_init(args: argparse.Namespace) -> int:
    from pipeline import init
    from pipeline.config import find_config_dir

    config_dir = find_config_dir()
    base = init.current(config_dir)
    given = {k: getattr(args, k) for k in init.QUESTIONS}
    root = config_dir.resolve().parent
    envs = init.environments(config_dir)
    answers = init.ask(given, base, envs, root, args.yes)
    report = init.initialise(root, config_dir, answers)
    print(init.render_report(answers, report, envs))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline import demo

    return demo.main(args.port)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mlops",
        description="GitOps MLOps on AWS: render, validate, deploy and run the retraining workflow, "
        "against AWS or the embedded local cloud.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    config = sub.add_parser("config", help="inspect the resolved project config")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print the resolved config and every derived name")
    _add_env(show)
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(handler=_cmd_config_show)

    render = sub.add_parser(
        "render", help="render the state machine ASL from config (one file per environment)"
    )
    render.add_argument("--env", help="only this environment (default: every overlay)")
    render.add_argument(
        "--check", action="store_true", help="exit 1 with a diff when a committed file is stale"
    )
    render.set_defaults(handler=_cmd_render)

    validate = sub.add_parser(
        "validate", help="check the committed ASL offline (graph, retries, gate)"
    )
    validate.add_argument("--env", help="only this environment (default: every overlay)")
    validate.add_argument("--file", help="validate this ASL file instead")
    validate.set_defaults(handler=_cmd_validate)

    graph = sub.add_parser("graph", help="draw the state machine as Mermaid into README.md")
    graph.add_argument("--env", help="environment whose ASL to draw (default: dev)")
    graph.add_argument("--readme", default="README.md", help="file holding the diagram markers")
    graph.add_argument("--check", action="store_true", help="exit 1 when the diagram is stale")
    graph.set_defaults(handler=_cmd_graph)

    stack_cmd = sub.add_parser(
        "stack", help="write the CloudFormation template as JSON (no deploy)"
    )
    _add_env(stack_cmd)
    stack_cmd.add_argument("-o", "--output", help="file to write (default: stdout)")
    stack_cmd.add_argument(
        "--bootstrap", action="store_true", help="the bootstrap template instead"
    )
    stack_cmd.add_argument("--github-repo", default="OWNER/REPO", help="repository for --bootstrap")
    stack_cmd.set_defaults(handler=_cmd_stack)

    lint_stack = sub.add_parser(
        "lint-stack", help="cfn-lint and parliament on every generated template"
    )
    lint_stack.add_argument("--env", help="only this environment (default: every overlay)")
    lint_stack.set_defaults(handler=_cmd_lint_stack)

    boot = sub.add_parser(
        "bootstrap", help="once per environment: data bucket and GitHub OIDC deploy role"
    )
    _add_env(boot)
    boot.add_argument(
        "--github-repo",
        help="OWNER/REPO allowed to deploy (default: project.github_repo in config/project.yaml)",
    )
    boot.add_argument(
        "--oidc-provider-arn", default="", help="an existing GitHub OIDC provider to reuse"
    )
    boot.set_defaults(handler=_cmd_bootstrap)

    dep = sub.add_parser(
        "deploy", help="upload changed code and apply the stack through a change set"
    )
    _add_env(dep)
    dep.set_defaults(handler=_cmd_deploy)

    run_cmd = sub.add_parser("run", help="start a retraining execution on a data drop")
    _add_env(run_cmd)
    run_cmd.add_argument(
        "--data",
        required=True,
        help="the drop under raw/, e.g. drop-002 or raw/drop-002/; `latest`: the newest drop",
    )
    run_cmd.add_argument(
        "--commit", help="code version recorded with the model (default: git HEAD)"
    )
    run_cmd.add_argument("--wait", action="store_true", help="follow the execution to its end")
    run_cmd.add_argument("--json", action="store_true", help="print the result as JSON")
    run_cmd.add_argument(
        "--summary-md", metavar="FILE", help="append a Markdown summary (for $GITHUB_STEP_SUMMARY)"
    )
    run_cmd.set_defaults(handler=_cmd_run)

    models = sub.add_parser("models", help="list the model registry")
    _add_env(models)
    models.add_argument("--json", action="store_true", help="print JSON for scripts")
    models.set_defaults(handler=_cmd_models)

    back = sub.add_parser("rollback", help="serve an earlier model again (endpoint and registry)")
    _add_env(back)
    back.add_argument("version", type=int, help="model version from `mlops models`")
    back.set_defaults(handler=_cmd_rollback)

    data_cmd = sub.add_parser("data", help="data drops")
    data_sub = data_cmd.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    push = data_sub.add_parser("push", help="upload a local drop (a file or folder) under raw/")
    _add_env(push)
    push.add_argument("path", help="file or folder to upload")
    push.add_argument("--drop", help="drop name under raw/ (default: the folder's name)")
    push.set_defaults(handler=_cmd_data_push)

    predict = sub.add_parser("predict", help="ask the production endpoint for predictions")
    _add_env(predict)
    predict.add_argument("--file", help="CSV or JSON request body (default: stdin)")
    predict.add_argument(
        "--content-type", default="text/csv", choices=["text/csv", "application/json"]
    )
    predict.set_defaults(handler=_cmd_predict)

    local = sub.add_parser("local", help="the embedded local cloud (moto plus executors)")
    local_sub = local.add_subparsers(dest="local_command", metavar="ACTION", required=True)
    local_up = local_sub.add_parser("up", help="start it in the background")
    local_up.add_argument("--port", type=int, default=4566)
    local_sub.add_parser("down", help="stop it")
    local_sub.add_parser("status", help="is it running? (exit 1 when not)")
    local.set_defaults(handler=_cmd_local)

    dry = sub.add_parser(
        "dry-run",
        help="retrain this checkout's code on a sample drop in a throwaway local cloud (PR check)",
    )
    _add_env(dry)
    dry.add_argument(
        "--data",
        help="local drop folder to train on (default: data/sample/drop-001)",
    )
    dry.add_argument("--commit", help="code version recorded with the model (default: git HEAD)")
    dry.add_argument("--json", metavar="FILE", help="write the run summary as JSON")
    dry.add_argument(
        "--compare", metavar="BASE_JSON", help="another dry run's --json, shown beside this one"
    )
    dry.add_argument(
        "--summary-md",
        metavar="FILE",
        help="append the comparison as Markdown ($GITHUB_STEP_SUMMARY)",
    )
    dry.set_defaults(handler=_cmd_dry_run)

    init_cmd = sub.add_parser(
        "init",
        help="start a new project from this template: name it, rewrite the old name everywhere",
        description="Make this copy of the template a new project: set the answers in "
        "config/project.yaml, rewrite the old project name (every case and separator) in every "
        "file and path of the repository, re-render the ASL and the README diagram, remove the "
        "template's benchmark figures, refresh .secrets.baseline, and print the next steps. "
        "Options not given are asked for (Enter keeps the [default]); --yes takes the defaults. "
        "A value AWS or the config would reject is refused, with the reason, before anything "
        "is written.",
    )
    init_cmd.add_argument(
        "--name",
        help="project name: lowercase letters, digits and single hyphens, 2-40 characters; "
        "every AWS resource name derives from it (default: the folder's name)",
    )
    init_cmd.add_argument("--region", help="AWS region, e.g. eu-west-1 (default: the config's)")
    init_cmd.add_argument(
        "--github-repo",
        metavar="OWNER/REPO",
        help="the GitHub repository whose workflows may deploy; `mlops bootstrap` defaults to "
        "it (default: the origin remote's, if on GitHub)",
    )
    init_cmd.add_argument(
        "--label-column", help="the column your model predicts (default: the config's)"
    )
    init_cmd.add_argument(
        "--metric",
        help="the metric the promotion gate compares: accuracy, f1_macro, precision_macro, "
        "recall_macro or balanced_accuracy (default: the config's)",
    )
    init_cmd.add_argument(
        "--yes", "-y", action="store_true", help="accept the defaults instead of asking"
    )
    init_cmd.set_defaults(handler=_cmd_init)

    demo = sub.add_parser("demo", help="tell the retraining story on the embedded local cloud")
    demo.add_argument(
        "--port", type=int, default=None, help="local cloud port (default: a free one)"
    )
    demo.set_defaults(handler=_cmd_demo)

    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    # Imported lazily: the modules defining these pull in pydantic and boto3.
    from pipeline.config import ConfigError
    from pipeline.data import DataError
    from pipeline.deploy import DeployError
    from pipeline.graph import GraphError
    from pipeline.localcloud.server import LocalCloudError
    from pipeline.registry import RegistryError
    from pipeline.run import RunError
    from pipeline.validate import ValidationError

    errors: tuple[type[BaseException], ...] = (
        ConfigError,
        ValidationError,
        GraphError,
        DeployError,
        RunError,
        RegistryError,
        DataError,
        LocalCloudError,
    )
    try:  # no credentials, unreachable endpoint: what to fix is outside the project
        from botocore.exceptions import EndpointConnectionError, NoCredentialsError, NoRegionError

        errors += (EndpointConnectionError, NoCredentialsError, NoRegionError)
    except ImportError:
        pass
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
