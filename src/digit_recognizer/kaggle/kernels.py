"""`digit-recognizer kernels push | status | output | logs | run`: the Kaggle kernel from the terminal.

A push starts a run on Kaggle's machines, so everything that can be checked locally is checked
first: the committed notebook is jupytext's conversion of today's kernel.py (notebook.staleness) and the
metadata will not make the push fail or the kernel run without its data. Every later command is about one kernel *version*:
the one the last push made (kernel-pushes.json), or --version N; asking Kaggle for the kernel's
latest session instead answers with the previous run until the new one has started.
"""
import argparse
import json
import re
import shutil
import sys
import tempfile
from shlex import quote
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..invocation import command
from ..runs import runs_flag
from ..interrupt_hold import interrupts_deferred
from ..local_io import write_json, write_text
from ..notebook import NOTEBOOK_FILE, SCRIPT_NAME, pushed_copy, staleness
from ..run_folders import publish_name, run_folder
from .client import (COMPETITION, KAGGLE_RUN_LIMIT, TIME_LIMIT, VERSION_NUMBER, KaggleSession, OutcomeUnknown,
                     RenamedFlag, connect, find_credentials, http_status, kaggle_config_dir, poll, scrub,
                     wait_timeout_flag)
from .kernel_logs import LogFollower, follow_log, print_log_tail, read_log
from .outside_text import clean_name, safe_value
from .pushes import (PUSHES_NAME, confirm_push, file_sha256, is_version, known_versions, latest_push, next_unknown,
                     push_of, read_pushes, record_push, unsettled)
from .records import DONE_AT_KAGGLE, KIT_RECORDS, ORIGIN_NAME, utc_now

METADATA_NAME = "kernel-metadata.json"
ID_PLACEHOLDER = "YOUR_KAGGLE_USERNAME"
KERNEL_DONE = {"COMPLETE"}
KERNEL_FAILED = {"ERROR", "CANCEL_REQUESTED", "CANCEL_ACKNOWLEDGED"}
NOT_STARTED = "QUEUED (not started yet)"


@dataclass(frozen=True)
class Version:
    """One kernel version, or the kernel's latest session when the number is unknown."""
    kernel: str
    number: int | None

    @property
    def ref(self) -> str:  # the client turns OWNER/SLUG/N into the API's version label vN
        return f"{self.kernel}/{self.number}" if self.number else self.kernel

    def __str__(self) -> str:
        return f"{self.kernel} version {self.number}" if self.number else f"{self.kernel} (latest version; no push recorded here)"

    def flags(self) -> str:
        return f" --version {self.number}" if self.number else ""


# ---- push -------------------------------------------------------------------------------------

def cmd_push(args: argparse.Namespace) -> int:
    session, version = push_kernel(args)
    print(f"next: {command('kernels status --wait')}\nthen: {command('kernels output')}"
          if not args.no_run else f"saved without running; '{command('kernels push')}' again to run it")
    return 0


def push_kernel(args: argparse.Namespace) -> tuple[KaggleSession, Version]:
    """Check, (for a GPU run) read the quota, push, and record which version Kaggle made of which code."""
    root: Path = args.path
    options = push_options(args)  # a bad value: the same line as `train` gives, before anything else
    credentials = find_credentials()  # no credentials: say so before anything else
    metadata = read_metadata(root)
    stale = staleness(root)
    if stale:
        raise UserError(stale)
    if isinstance(metadata.get("code_file"), str) and (root / metadata["code_file"]).is_file():
        pushable_code_file(root, metadata["code_file"])  # never a file of the Kaggle config folder
    errors, warnings = metadata_problems(metadata, root, args.accelerator)
    if not errors and args.script:
        metadata = {**metadata, "kernel_type": "script"}
    for line in warnings:
        print(f"digit-recognizer: warning: {root / METADATA_NAME}: {line}", file=sys.stderr)
    if errors:
        for line in errors[1:]:
            print(f"digit-recognizer: error: {root / METADATA_NAME}: {line}", file=sys.stderr)
        raise UserError(f"{root / METADATA_NAME}: {errors[0]}")
    read_pushes(root)  # a damaged record is said now, not after Kaggle has made the version
    session = connect(credentials)
    kernel = kernel_ref(metadata, session)
    if wants_gpu(metadata, args.accelerator) and not args.no_run:
        check_gpu_quota(session, args.ignore_quota)
    pushed = send_push(session, args, root, metadata, kernel, options)
    verb = "saved (not run)" if args.no_run else "pushed; Kaggle runs it now"
    number = pushed["version"]
    print(f"{Version(kernel, number)} {verb}" if number else f"{kernel} {verb} (Kaggle sent no version number)")
    print(f"as a {metadata['kernel_type']}, with {option_flags(options) or 'the default options'}")
    print(f"kernel: {pushed['url']}")
    print(f"recorded in {root / PUSHES_NAME}")
    return session, Version(kernel, number)


def send_push(session: KaggleSession, args: argparse.Namespace, root: Path, metadata: dict, kernel: str,
              options: dict) -> dict:
    """Push, and record which version Kaggle made of which code, with Ctrl-C and SIGTERM held from the
    request's start until the record is on disk (as for a submission), so that a version Kaggle made is
    never unrecorded. When Kaggle may have made one although its answer was lost, a pending entry is
    kept instead, and the one line says so and how to check. Returns the entry recorded."""
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-push-") as stage:
        # The committed notebook with the options in its settings cell (the stale check above made sure it
        # is today's kernel.py), or its script form; the client reads the code file's text itself.
        script = metadata["kernel_type"] == "script"
        code_file = Path(stage) / (SCRIPT_NAME if script else NOTEBOOK_FILE.name)
        write_text(code_file, pushed_copy(root, options, script=script))
        write_json(Path(stage) / METADATA_NAME, {**metadata, "id": kernel, "code_file": code_file.name})
        entry = {"kernel": kernel, "version": None, "pushed_at": utc_now(), "url": None,
                 "code_file": metadata["code_file"], "code_sha256": file_sha256(code_file),
                 "kernel_type": metadata["kernel_type"], "options": options,
                 "accelerator": args.accelerator or metadata.get("machine_shape"),
                 "timeout_seconds": args.time_limit, "no_run": args.no_run}
        with interrupts_deferred():
            after = max(known_versions(root, kernel), default=0)
            try:
                response = session.call("pushing the kernel", "kernels_push", stage, args.time_limit,
                                        args.accelerator, no_run=args.no_run)
            except OutcomeUnknown as exc:
                record_push(root, {**entry, "pending": True, "after_version": after, "problem": str(exc)})
                said = (f"Kaggle may have made a new version of {kernel}: check '{kernels_cli()} status' (a "
                        f"pending record is kept in {root / PUSHES_NAME}; that command settles it) before "
                        f"pushing again")
                DONE_AT_KAGGLE.append(said)
                raise UserError(f"{exc}; {said}") from None
            return record_pushed(response, root, metadata, kernel, entry)


def record_pushed(response, root: Path, metadata: dict, kernel: str, entry: dict) -> dict:
    """Kaggle's answer to a push: refused (one line), or the version it made, recorded."""
    problem = scrub(_push_problem(response) or "", limit=300)  # the reply is through the gate; cut here
    if problem:
        raise UserError(f"Kaggle refused the push of {kernel}: {problem}")
    if metadata["id"] != kernel:
        _record_kernel_id(root / METADATA_NAME, metadata["id"], kernel)
        print(f"{root / METADATA_NAME}: id set to {kernel}")
    number = response.version_number
    entry.update(version=number if is_version(number) else None,
                 url=response.url or f"https://www.kaggle.com/code/{kernel}")
    for line in record_push(root, entry):
        print(line)
    made = Version(kernel, entry["version"]) if entry["version"] else f"a new version of {kernel}"
    DONE_AT_KAGGLE.append(f"Kaggle made {made}, recorded in {root / PUSHES_NAME}")
    return entry


def pushable_code_file(root: Path, code_file: str) -> Path:
    """The file a push may send: the notebook jupytext makes of kernel.py (the one the stale check vouched
    for), and never a file in the Kaggle config folder, whose kaggle.json or access_token would otherwise
    be uploaded as kernel source (issue 20)."""
    path = (root / code_file).resolve()
    generated = [NOTEBOOK_FILE]
    secrets = [kaggle_config_dir(), Path.home() / ".kaggle"]
    if any(path.is_relative_to(folder.resolve()) for folder in secrets):
        raise UserError(f"{root / METADATA_NAME}: code_file {code_file!r} is in the Kaggle config folder, which "
                        f"holds your credentials; nothing was pushed: set \"code_file\": \"{NOTEBOOK_FILE}\"")
    if path not in [(root / name).resolve() for name in generated]:
        raise UserError(f"{root / METADATA_NAME}: code_file {code_file!r} is not the kit's notebook; push sends "
                        f"only the notebook jupytext makes of kernel.py; nothing was pushed: "
                        f"set \"code_file\": \"{NOTEBOOK_FILE}\"")
    return path


def kernels_cli() -> str:
    """`digit-recognizer kernels`, started the way this process was (see invocation.py)."""
    return command("kernels")


def push_options(args: argparse.Namespace) -> dict:
    """The training options given to push or run (any flag of `train`), checked as `train` checks them:
    the settings they change, for the pushed copy's settings cell. Only these load the kernel (and torch)."""
    if not args.training_flags:
        return {}
    from .. import kernel
    from ..cli import Parser, refuse_removed_flags

    refuse_removed_flags(args.training_flags)
    parser = Parser(prog=f"digit-recognizer kernels {args.kernels_command}", add_help=False)
    kernel.add_settings_flags(parser)
    config = kernel.config_from_flags(parser.parse_args(kernel.joined_negative_numbers(args.training_flags)))
    note = kernel.unused_settings(config)
    if note:
        print(note, file=sys.stderr)
    return kernel.settings_changed(config)


def option_flags(options: dict) -> str:
    """{"folds": 5, "refit": True} -> '--folds 5 --refit', as they would be typed."""
    def flag(name, value):
        name = "--" + name.replace("_", "-")
        return (name if value else "--no-" + name[2:]) if isinstance(value, bool) else f"{name} {value}"

    return " ".join(flag(name, value) for name, value in (options or {}).items())


def wants_gpu(metadata: dict, accelerator: str | None) -> bool:
    if accelerator:
        return accelerator.lower().startswith("nvidia") or "gpu" in accelerator.lower()
    return bool(metadata.get("enable_gpu"))


def check_gpu_quota(session: KaggleSession, ignore: bool) -> None:
    """Print the week's GPU hours left (client's quota_view); stop when none are left unless `ignore`."""
    try:
        quota = session.call("reading your GPU quota", "quota_view")
    except UserError as exc:
        print(f"GPU quota: unknown ({exc}); pushing anyway")
        return
    gpu = getattr(quota, "gpu_quota", None)
    if gpu is None or gpu.total_time_allowed is None:
        print("GPU quota: unknown (Kaggle sent none); pushing anyway")
        return
    used = (gpu.time_used.total_seconds() if gpu.time_used else 0.0) / 3600
    total = gpu.total_time_allowed.total_seconds() / 3600
    refresh = quota.quota_refresh_time
    when = f"{refresh:%Y-%m-%d %H:%M} UTC" if refresh else "at the weekly reset"
    left = max(total - used, 0.0)
    if left <= 0 and not ignore:
        raise UserError(f"no GPU quota left this week ({used:.1f} of {total:.1f} h used; it refreshes {when}); "
                        f"nothing was pushed: wait, set \"enable_gpu\": false in {METADATA_NAME}, "
                        f"or pass --ignore-quota")
    print(f"GPU quota: {left:.1f} of {total:.1f} h left this week (refreshes {when})")


def read_metadata(root: Path) -> dict:
    path = root / METADATA_NAME
    if not path.is_file():
        raise UserError(f"{path}: no such file; run from the project folder that holds {METADATA_NAME} "
                        f"(or pass -p DIR)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    except ValueError:  # json's int() past Python's 4,300-digit limit
        raise UserError(f"{path}: holds an integer of more than 4,300 digits; expected Kaggle's kernel metadata") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be kernel metadata; expected a JSON object with id, "
                        f"title, code_file, ...") from None
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
    if metadata.get("language") != "python" or metadata.get("kernel_type") != "notebook" or (
            code_file != NOTEBOOK_FILE.as_posix() and (root / str(code_file)).is_file()):
        errors.append(f"expected \"language\": \"python\" and \"kernel_type\": \"notebook\" with \"code_file\": "
                      f"\"{NOTEBOOK_FILE.as_posix()}\" (`kernels push --script` sends its script form)")
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


# ---- which version a command is about ---------------------------------------------------------

def resolve_kernel(args: argparse.Namespace, session: KaggleSession) -> str:
    if args.kernel:
        if args.kernel.count("/") != 1 or not all(args.kernel.split("/")):
            raise UserError(f"--kernel {args.kernel!r}: expected OWNER/SLUG")
        return args.kernel
    metadata = read_metadata(args.path)
    if not isinstance(metadata.get("id"), str) or metadata["id"].count("/") != 1:
        raise UserError(f"{args.path / METADATA_NAME}: id is {metadata.get('id')!r}; expected 'USERNAME/kernel-slug'")
    return kernel_ref(metadata, session)


def resolve_version(args: argparse.Namespace, session: KaggleSession) -> Version:
    """--version N, else the version the last push from here made, else Kaggle's latest."""
    kernel = resolve_kernel(args, session)
    if args.version is not None:
        if args.version < 1:
            raise UserError(f"--version {args.version}: expected a kernel version number (1, 2, ...)")
        return Version(kernel, args.version)
    settle_pending(session, args.path, kernel)
    pushed = latest_push(args.path, kernel)
    if pushed:
        return Version(kernel, pushed["version"])
    return Version(kernel, None)  # not pushed from here: Kaggle's latest, and every line says so


def settle_pending(session: KaggleSession, root: Path, kernel: str) -> None:
    """Each push from here whose answer was lost, and that no later push has settled: ask Kaggle for the
    version after the ones accounted for; when it has one, that push made it, and the entry records it.
    Otherwise it stays pending, and a line says so (the status shown is then of the version before)."""
    for pending in unsettled(root, kernel):
        number = next_unknown(pending["after_version"], known_versions(root, kernel))
        try:
            kernel_state(session, Version(kernel, number))
        except UserError as exc:
            if http_status(exc) != 404:
                raise
            print(f"the push at {pending.get('pushed_at')}, whose answer was lost, may still have made a version: "
                  f"Kaggle has no session for version {number} (yet); its record stays pending", file=sys.stderr)
            continue
        confirm_push(root, pending, number)
        print(f"the push at {pending.get('pushed_at')}, whose answer was lost, made {Version(kernel, number)}; "
              f"recorded in {root / PUSHES_NAME}", file=sys.stderr)


def kernel_state(session: KaggleSession, version: Version, waiting: bool = False) -> tuple[str, str]:
    try:
        response = session.call(f"reading the status of {version}", "kernels_status", version.ref)
    except UserError as exc:
        if waiting and version.number and http_status(exc) == 404:
            return NOT_STARTED, ""  # a version just pushed may not have a session yet
        raise
    status = getattr(response.status, "name", None) or str(response.status)
    return status, scrub(response.failure_message or "", limit=500)


def wait_for(session: KaggleSession, version: Version, timeout: float, resume: str) -> tuple[str, str]:
    """Poll this version's status until it ends, showing its live log's last line meanwhile."""
    latest = {"failure": ""}
    follower = LogFollower(session, version.ref)

    def check() -> tuple[bool, str]:
        status, latest["failure"] = kernel_state(session, version, waiting=True)
        return status in KERNEL_DONE | KERNEL_FAILED, status

    try:
        status = poll(check, timeout, str(version), resume, detail=follower.last_line)
    finally:
        follower.stop()
    return status, latest["failure"]


# ---- status, logs, output ---------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    session = connect()
    version = resolve_version(args, session)
    if args.wait:
        status, failure = wait_for(session, version, args.wait_timeout, f"{kernels_cli()} status --wait{_kernel_flags(args, version)}")
    else:
        status, failure = kernel_state(session, version)
    print(f"{version}: {status}" + (f" ({failure})" if failure else "") + pushed_with(args.path, version))
    if status in KERNEL_FAILED:
        print_log_tail(session, version.ref, str(version))
        return 1
    if status in KERNEL_DONE:
        print(f"next: {kernels_cli()} output{_kernel_flags(args, version)}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    session = connect()
    version = resolve_version(args, session)
    print(f"log of {version}" + (" (following until the run ends)" if args.follow else ""), file=sys.stderr)
    if not args.follow:
        text = read_log(session, version.ref)
        print(text.rstrip("\n") if text.strip() else "(the log is empty)")
        return 0
    resume = f"{kernels_cli()} logs --follow{_kernel_flags(args, version)}"
    for text in follow_log(session, version.ref, args.wait_timeout, resume):
        print(text, end="", flush=True)
    return 0


def cmd_output(args: argparse.Namespace) -> int:
    session = connect()
    version = resolve_version(args, session)
    status, failure = kernel_state(session, version)
    if status not in KERNEL_DONE | KERNEL_FAILED:
        raise UserError(f"{version} is {status}; its output comes when it finishes: "
                        f"{kernels_cli()} status --wait{_kernel_flags(args, version)}")
    final = fetch_output(session, version, status, args.runs, args.path)
    if status in KERNEL_FAILED:
        print(f"the kernel failed{f' ({failure})' if failure else ''}; its log is in the run folder")
    submission = final / "submission.csv"
    if submission.is_file():
        from ..submission_check import check_submission

        _, problems = check_submission(submission, None)
        print(f"submission: {submission}" + (f" (problem: {problems[0]})" if problems else ""))
        print(f"next: {command('submit ' + quote(str(final)))}\nor: {command('submit --kernel' + version.flags())}")
    return 1 if status in KERNEL_FAILED else 0


def fetch_output(session: KaggleSession, version: Version, status: str, runs: Path, root: Path) -> Path:
    """The version's output files (and log) in a new run folder whose origin.json names the version."""
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-output-", ignore_cleanup_errors=True) as temp:
        session.call(f"downloading the output of {version}", "kernels_output", version.ref, temp,
                     force=True, quiet=True, transfer=True)
        fetched = sorted(p for p in Path(temp).rglob("*") if p.is_file())
        if not fetched:
            raise UserError(f"{version} has no output files on Kaggle (status {status})")
        with run_folder(runs) as folder:
            set_aside = [place_fetched(path, Path(temp), folder, session) for path in fetched]
            write_json(folder / ORIGIN_NAME, origin_record(version, status, root))
            final = publish_name(folder)
    names = sorted(str(p.relative_to(final)) for p in final.rglob("*") if p.is_file())
    print(f"run folder: {final} (from Kaggle kernel {version}, status {status}{pushed_with(root, version)})")
    print("files: " + ", ".join(names))
    for line in filter(None, set_aside):
        print(line)
    return final


FROM_KERNEL = "from-kernel."  # the prefix a kernel's file named like one of the kit's records is kept under


def place_fetched(path: Path, temp: Path, folder: Path, session: KaggleSession) -> str:
    """Move one fetched output file into the run folder under a safe name: each part of its name through
    the gate, and never one of the kit's own records (kaggle_submissions.json, origin.json), which only
    the kit writes: a kernel's file of that name is kept as from-kernel.NAME and never read as the run's
    record. Returns a line saying what was renamed, or ''."""
    parts = [clean_name(part, session.credentials) for part in path.relative_to(temp).parts]
    note = ""
    if len(parts) == 1 and parts[0] in KIT_RECORDS:
        note = (f"the kernel's output holds {parts[0]}, which only the kit writes; kept as {FROM_KERNEL}{parts[0]}, "
                f"not used as this run's record")
        parts[0] = FROM_KERNEL + parts[0]
    target = unused_name(folder.joinpath(*parts))  # two names the same once made safe: neither is lost
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(path, target)
    if not note and target.relative_to(folder).parts != path.relative_to(temp).parts:
        note = f"an output file's name held characters that are not safe to show; kept as {target.relative_to(folder)}"
    if target == folder / "metrics.json" and make_strings_safe(target):
        note = (f"the kernel's metrics.json held text that is not safe to show; its strings are made safe there "
                f"(the file as fetched: {FROM_KERNEL}metrics.json)")
    return note


def make_strings_safe(path: Path) -> bool:
    """Rewrite a fetched JSON file (the kernel's metrics.json, which `runs`, `submit` and `submissions`
    read and print) with every string through the gate, keeping the original beside it as
    from-kernel.NAME; True when anything had to change. A file that is not JSON is left as it is (its
    readers call it damaged)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    safe = safe_value(value)
    if json.dumps(safe) == json.dumps(value):  # compared as written: a NaN equals itself there
        return False
    shutil.copyfile(path, unused_name(path.with_name(FROM_KERNEL + path.name)))
    write_json(path, safe)
    return True


def unused_name(path: Path) -> Path:
    """`path`, or NAME-2.EXT, NAME-3.EXT, ... when it is taken."""
    candidate, number = path, 2
    while candidate.exists():
        candidate, number = path.with_name(f"{path.stem}-{number}{path.suffix}"), number + 1
    return candidate


def origin_record(version: Version, status: str, root: Path, files: str = "all") -> dict:
    """origin.json of a run folder made from a kernel version: which version, and the push that made it."""
    pushed = push_of(root, version.kernel, version.number) if version.number else None
    origin = {"origin": "kaggle", "kernel": version.kernel, "version": version.number, "status": status,
              "files": files, "fetched_at": utc_now()}
    if pushed:
        origin["push"] = {k: pushed.get(k) for k in ("pushed_at", "code_file", "code_sha256", "kernel_type",
                                                     "options", "accelerator")}
    return origin


def pushed_with(root: Path, version: Version) -> str:
    """'; pushed with --folds 5' for a version pushed from here with options, else nothing."""
    pushed = push_of(root, version.kernel, version.number) if version.number else None
    return f"; pushed with {option_flags(pushed['options'])}" if pushed and pushed.get("options") else ""


# ---- run: push, wait for that version, fetch, validate -----------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from ..submission_check import check_submission
    from .submitting import expected_rows

    n_rows, source = expected_rows(args.data)  # a bad --data is said before anything is pushed
    args.no_run = False
    session, version = push_kernel(args)
    if not version.number:
        raise UserError(f"{version.kernel}: Kaggle sent no version number, so this run cannot be told from "
                        f"the previous one; follow it with '{kernels_cli()} status --wait'")
    resume = f"{kernels_cli()} status --wait --version {version.number}, then {kernels_cli()} output --version {version.number}"
    status, failure = wait_for(session, version, args.wait_timeout, resume)
    print(f"{version}: {status}" + (f" ({failure})" if failure else ""))
    if status in KERNEL_FAILED:
        print_log_tail(session, version.ref, str(version))
        return 1
    final = fetch_output(session, version, status, args.runs, args.path)
    submission = final / "submission.csv"
    if not submission.is_file():
        raise UserError(f"{version} wrote no submission.csv (run folder {final}); see its log: "
                        f"{kernels_cli()} logs --version {version.number}")
    _, problems = check_submission(submission, n_rows)
    for line in problems:
        print(f"digit-recognizer: error: {line}", file=sys.stderr)
    accuracy = reported_accuracy(final)
    print(f"validation accuracy (reported by the kernel): {accuracy:.4f}" if accuracy is not None
          else "validation accuracy: the kernel reported none")
    if problems:
        raise UserError(f"{submission}: not a valid submission ({len(problems)} problem(s) above, "
                        f"checked against {n_rows} rows of {source})")
    print(f"submission: {submission} (valid: {n_rows} rows)")
    print(f"next: {command('submit ' + quote(str(final)))}\nor: {command(f'submit --kernel --version {version.number}')}")
    return 0


ACCURACY_IN_LOG = re.compile(r"validation accuracy:?\s*([01]\.\d+)", re.IGNORECASE)


def reported_accuracy(folder: Path) -> float | None:
    """val_accuracy from the fetched metrics.json, else the last one the log printed."""
    from ..run_record import read_run

    value = read_run(folder).val_accuracy
    if value is not None:
        return value
    for log in folder.glob("*.log"):
        found = ACCURACY_IN_LOG.findall(log.read_text(encoding="utf-8", errors="replace"))
        if found:
            return float(found[-1])
    return None


# ---- the command line -------------------------------------------------------------------------

def _kernel_flags(args: argparse.Namespace, version: Version) -> str:
    return (f" --kernel {args.kernel}" if getattr(args, "kernel", None) else "") + version.flags()


def push_flags(push: argparse.ArgumentParser) -> None:
    _path_argument(push)
    _push_arguments(push)
    push.add_argument("--no-run", action="store_true", help="save the version without running it (default: run it)")
    push.set_defaults(handler=cmd_push)


def status_flags(status: argparse.ArgumentParser) -> None:
    _version_arguments(status)
    status.add_argument("--wait", action="store_true",
                        help="poll until the run completes or fails, showing its last log line (default: off)")
    wait_timeout_flag(status, 3600, "with --wait")
    status.set_defaults(handler=cmd_status)


def output_flags(output: argparse.ArgumentParser) -> None:
    _version_arguments(output)
    runs_flag(output, "--to")
    output.set_defaults(handler=cmd_output)


def logs_flags(logs: argparse.ArgumentParser) -> None:
    _version_arguments(logs)
    logs.add_argument("--follow", action="store_true",
                      help="stream the log while the kernel runs; stops when the run ends (default: off)")
    wait_timeout_flag(logs, 3600, "with --follow")
    logs.set_defaults(handler=cmd_logs)


def run_flags(run: argparse.ArgumentParser) -> None:
    _path_argument(run)
    _push_arguments(run)
    wait_timeout_flag(run, 3600, "for the version to finish")
    run.add_argument("--data", type=Path, metavar="DIR",
                     help="folder with the test.csv the submission answers (default: the competition's 28,000 rows)")
    runs_flag(run)
    run.set_defaults(handler=cmd_run, kernel=None, version=None)


def _path_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--path", type=Path, default=Path("."), metavar="DIR",
                        help=f"folder holding {METADATA_NAME} and {PUSHES_NAME} (default: .)")


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accelerator", metavar="SHAPE", help="Kaggle machine shape, e.g. NvidiaTeslaT4 (default: the metadata's)")
    parser.add_argument("--time-limit", type=TIME_LIMIT, metavar="SECONDS",
                        help=f"the run's time limit on Kaggle, 1 to {KAGGLE_RUN_LIMIT} (default: Kaggle's own limit)")
    parser.add_argument("--timeout", dest="time_limit", type=TIME_LIMIT, action=RenamedFlag, new="--time-limit")
    parser.add_argument("--ignore-quota", action="store_true",
                        help="push a GPU run even when the weekly GPU quota reads as used up (default: off)")
    parser.add_argument("--script", action="store_true",
                        help="push the kernel as a script instead of a notebook (default: off)")
    # The version runs with any of train's flags: they are written into the settings cell of the copy pushed.
    parser.epilog = ("training options: any flag of 'digit-recognizer train' (--folds 5, --weight-decay auto, "
                     "--features ...; 'digit-recognizer train --help' lists them), checked as train checks them "
                     "and written into the SETTINGS cell of the copy pushed")
    parser.set_defaults(training_flags=[], takes_training_flags=True)


def _version_arguments(parser: argparse.ArgumentParser) -> None:
    _path_argument(parser)
    parser.add_argument("--kernel", metavar="OWNER/SLUG", help=f"OWNER/SLUG (default: the id in {METADATA_NAME})")
    parser.add_argument("--version", type=VERSION_NUMBER, metavar="N",
                        help=f"the kernel version (default: the one last pushed, from {PUSHES_NAME})")


