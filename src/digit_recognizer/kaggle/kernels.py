"""The Kaggle kernel from the terminal: push the committed kernel, follow its run, fetch its output.

A push starts a run on Kaggle's machines, so everything that can be checked locally is checked
first: the committed kernel is current (bundle.kernel_staleness) and the metadata will not make the
push fail or the kernel run without its data.
"""
import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ..core.errors import UserError
from ..core.fileio import write_json, write_text
from .client import COMPETITION, KaggleSession, connect, find_credentials, poll
from ..run_folders import publish_name, run_folder
from .records import ORIGIN_NAME, utc_now

METADATA_NAME = "kernel-metadata.json"
ID_PLACEHOLDER = "YOUR_KAGGLE_USERNAME"
KERNEL_DONE = {"COMPLETE"}
KERNEL_FAILED = {"ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}


def cmd_push(args: argparse.Namespace) -> int:
    root: Path = args.path
    credentials = find_credentials()  # no credentials: say so before anything else
    metadata = read_metadata(root)
    from ..bundle import kernel_staleness

    stale = kernel_staleness(root)
    if stale:
        raise UserError(stale)
    errors, warnings = metadata_problems(metadata, root, args.accelerator)
    for line in warnings:
        print(f"digit-recognizer: warning: {root / METADATA_NAME}: {line}", file=sys.stderr)
    if errors:
        for line in errors[1:]:
            print(f"digit-recognizer: error: {root / METADATA_NAME}: {line}", file=sys.stderr)
        raise UserError(f"{root / METADATA_NAME}: {errors[0]}")
    session = connect(credentials)
    kernel = kernel_ref(metadata, session)
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-push-") as stage:
        # The client reads the code file's text itself; only the id differs from the committed metadata.
        staged = {**metadata, "id": kernel, "code_file": str((root / metadata["code_file"]).resolve())}
        write_json(Path(stage) / METADATA_NAME, staged)
        response = session.call("pushing the kernel", "kernels_push", stage, None, args.accelerator)
    problem = _push_problem(response)
    if problem:
        raise UserError(f"Kaggle refused the push of {kernel}: {problem}")
    if metadata["id"] != kernel:
        _record_kernel_id(root / METADATA_NAME, metadata["id"], kernel)
        print(f"{root / METADATA_NAME}: id set to {kernel}")
    version = getattr(response, "version_number", None)
    print(f"pushed {kernel}" + (f" (version {version})" if version else "") + "; Kaggle runs it now")
    print(f"kernel: {response.url or f'https://www.kaggle.com/code/{kernel}'}")
    print("next: digit-recognizer status --wait, then digit-recognizer output")
    return 0


def read_metadata(root: Path) -> dict:
    path = root / METADATA_NAME
    if not path.is_file():
        raise UserError(f"{path}: no such file; run from the project folder that holds {METADATA_NAME} "
                        f"(or pass -p DIR)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise UserError(f"{path}: expected a JSON object with id, title, code_file, ...")
    return metadata


def metadata_problems(metadata: dict, root: Path, accelerator: str | None) -> tuple[list[str], list[str]]:
    """What would make the push fail or the kernel run wrongly (errors), and what is merely risky."""
    from slugify import slugify  # installed with the kaggle client, which slugs titles the same way

    errors, warnings = [], []
    kernel_id, title = metadata.get("id"), metadata.get("title")
    if not isinstance(kernel_id, str) or kernel_id.count("/") != 1 or not all(kernel_id.split("/")):
        errors.append(f"id is {kernel_id!r}; expected 'USERNAME/kernel-slug'")
    elif not isinstance(title, str) or len(title) < 5:
        errors.append(f"title is {title!r}; expected a title of at least 5 characters")
    elif slugify(title) != kernel_id.split("/")[1].lower():
        errors.append(f"id's slug '{kernel_id.split('/')[1]}' does not match the title (Kaggle makes "
                      f"'{slugify(title)}' of it; the push would fail with 'Notebook not found')")
    code_file = metadata.get("code_file")
    if not isinstance(code_file, str) or not (root / code_file).is_file():
        errors.append(f"code_file {code_file!r} is not a file under {root}")
    if metadata.get("language") != "python" or metadata.get("kernel_type") != "script":
        errors.append("expected \"language\": \"python\" and \"kernel_type\": \"script\"")
    if COMPETITION not in (metadata.get("competition_sources") or []):
        errors.append(f"competition_sources lacks \"{COMPETITION}\"; the kernel would find no data")
    if not isinstance(metadata.get("enable_internet"), bool):
        errors.append("set \"enable_internet\" to false explicitly (the client turns it on when omitted)")
    if metadata.get("enable_gpu") and not (metadata.get("machine_shape") or accelerator):
        warnings.append("enable_gpu without machine_shape may get a retired P100; "
                        "set \"machine_shape\": \"NvidiaTeslaT4\" or pass --accelerator")
    if metadata.get("docker_image"):
        warnings.append("docker_image pins an old Kaggle image; remove it to run on the current one")
    return errors, warnings


def kernel_ref(metadata: dict, session: KaggleSession) -> str:
    """The metadata's id with the placeholder owner replaced by the credentials' username."""
    owner, slug = metadata["id"].split("/")
    if owner != ID_PLACEHOLDER:
        return metadata["id"]
    if not session.username:
        raise UserError(f"{METADATA_NAME}: id starts with {ID_PLACEHOLDER} and the credentials name no "
                        f"username; write your Kaggle username there")
    return f"{session.username}/{slug}"


def _push_problem(response) -> str:
    if getattr(response, "error", None):
        return response.error
    for source in ("competition", "dataset", "kernel", "model"):
        invalid = getattr(response, f"invalid_{source}_sources", None)
        if invalid:
            return f"invalid {source} sources: {invalid}"
    return ""


def _record_kernel_id(path: Path, old: str, new: str) -> None:
    """Write the filled-in id into the user's metadata, changing nothing else in the file."""
    text = path.read_text(encoding="utf-8")
    updated = text.replace(json.dumps(old), json.dumps(new), 1)
    if json.loads(updated).get("id") != new:
        updated = json.dumps({**json.loads(text), "id": new}, indent=2) + "\n"
    write_text(path, updated)


def resolve_kernel(args: argparse.Namespace, session: KaggleSession) -> str:
    if args.kernel:
        if args.kernel.count("/") != 1 or not all(args.kernel.split("/")):
            raise UserError(f"--kernel {args.kernel!r}: expected OWNER/SLUG")
        return args.kernel
    metadata = read_metadata(args.path)
    if not isinstance(metadata.get("id"), str) or metadata["id"].count("/") != 1:
        raise UserError(f"{args.path / METADATA_NAME}: id is {metadata.get('id')!r}; expected 'USERNAME/kernel-slug'")
    return kernel_ref(metadata, session)


def kernel_state(session: KaggleSession, kernel: str) -> tuple[str, str]:
    response = session.call(f"reading the status of {kernel}", "kernels_status", kernel)
    status = getattr(response.status, "name", None) or str(response.status)
    return status, (response.failure_message or "")


def cmd_status(args: argparse.Namespace) -> int:
    session = connect()
    kernel = resolve_kernel(args, session)
    latest = {}

    def check() -> tuple[bool, str]:
        latest["status"], latest["failure"] = kernel_state(session, kernel)
        return latest["status"] in KERNEL_DONE | KERNEL_FAILED, latest["status"]

    resume = f"digit-recognizer status --wait{f' --kernel {args.kernel}' if args.kernel else ''}"
    status = poll(check, args.timeout, kernel, resume) if args.wait else check()[1]
    print(f"{kernel}: {status}" + (f" ({latest['failure']})" if latest["failure"] else ""))
    if status in KERNEL_DONE:
        print("next: digit-recognizer output")
    return 1 if status in KERNEL_FAILED else 0


def cmd_output(args: argparse.Namespace) -> int:
    session = connect()
    kernel = resolve_kernel(args, session)
    status, failure = kernel_state(session, kernel)
    if status not in KERNEL_DONE | KERNEL_FAILED:
        raise UserError(f"{kernel} is {status}; its output comes when it finishes: digit-recognizer status --wait")
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-output-", ignore_cleanup_errors=True) as temp:
        session.call(f"downloading the output of {kernel}", "kernels_output", kernel, temp,
                     force=True, quiet=True, transfer=True)
        fetched = sorted(p for p in Path(temp).rglob("*") if p.is_file())
        if not fetched:
            raise UserError(f"{kernel} has no output files on Kaggle (status {status})")
        with run_folder(args.to) as folder:
            for path in fetched:
                target = folder / path.relative_to(temp)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
            write_json(folder / ORIGIN_NAME, {"origin": "kaggle", "kernel": kernel, "status": status,
                                              "fetched_at": utc_now()})
            final = publish_name(folder)
    names = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file())
    print(f"run folder: {final} (from Kaggle kernel {kernel}, status {status})")
    print("files: " + ", ".join(names))
    if status in KERNEL_FAILED:
        print(f"the kernel failed{f' ({failure})' if failure else ''}; its log is in the run folder")
    submission = final / "submission.csv"
    if submission.is_file():
        from ..submission_check import check_submission

        _, problems = check_submission(submission, None)
        print(f"submission: {submission}" + (f" (problem: {problems[0]})" if problems else ""))
        print(f"next: digit-recognizer submit {final}")
    return 1 if status in KERNEL_FAILED else 0


def add_kernel_commands(commands) -> None:
    push = commands.add_parser("push", help="push the committed Kaggle kernel (after checking it is current)")
    _metadata_argument(push)
    push.add_argument("--accelerator", help="Kaggle machine shape, e.g. NvidiaTeslaT4 (overrides the metadata's)")
    push.set_defaults(handler=cmd_push)

    status = commands.add_parser("status", help="the pushed kernel's run status")
    _metadata_argument(status, with_kernel=True)
    status.add_argument("--wait", action="store_true", help="poll until the run completes or fails")
    status.add_argument("--timeout", type=float, default=3600,
                        help="seconds to wait at most with --wait (default: 3600)")
    status.set_defaults(handler=cmd_status)

    output = commands.add_parser("output", help="download the kernel's output into a new run folder")
    _metadata_argument(output, with_kernel=True)
    output.add_argument("--to", type=Path, default=Path("submissions"),
                        help="where run folders go (default: submissions)")
    output.set_defaults(handler=cmd_output)


def _metadata_argument(parser: argparse.ArgumentParser, with_kernel: bool = False) -> None:
    parser.add_argument("-p", "--path", type=Path, default=Path("."),
                        help=f"folder holding {METADATA_NAME} (default: .)")
    if with_kernel:
        parser.add_argument("--kernel", help=f"OWNER/SLUG (default: the id in {METADATA_NAME})")
