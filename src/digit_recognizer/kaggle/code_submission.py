"""`submit --kernel`: submit a kernel version's submission.csv where Kaggle made it (the client's
competition_submit_code), after fetching that one file and validating it exactly as a local one.

The fetched file is kept in the run folder of that kernel version (the one `kernels output` made, or a
new one holding just submission.csv), so the submission is recorded against the run the pushed code
produced, and so the download-then-submit route is one command away if Kaggle refuses code submissions.
"""
import argparse
import shutil
import tempfile
from shlex import quote
from pathlib import Path

from ..errors import UserError
from ..invocation import command
from ..local_io import write_json
from ..run_folders import publish_name, run_folder
from .client import COMPETITION, connect, find_credentials, http_status
from .kernels import KERNEL_DONE, Version, kernels_cli, kernel_state, origin_record, resolve_version
from .records import ORIGIN_NAME, default_message, kernel_run, prepare_records
from .submitting import after_submit, check_limits, check_wait, expected_rows, refuse_invalid, upload_and_record

FILE_NAME = "submission.csv"


def submit_kernel_version(args: argparse.Namespace) -> int:
    credentials = find_credentials()  # no credentials: say so before anything else
    n_rows, source = expected_rows(args.data)
    session = connect(credentials)
    version = resolve_version(args, session)
    if not version.number:
        raise UserError(f"{version.kernel}: which version to submit is not known here; pass --version N "
                        f"(the versions are listed at https://www.kaggle.com/code/{version.kernel})")
    status, _ = kernel_state(session, version)
    if status not in KERNEL_DONE:
        raise UserError(f"{version} is {status}; only a complete version can be submitted: "
                        f"{kernels_cli()} status --wait{version.flags()}, or pass --version N")
    with tempfile.TemporaryDirectory(prefix="digit-recognizer-submit-", ignore_cleanup_errors=True) as temp:
        session.call(f"fetching {FILE_NAME} of {version}", "kernels_output", version.ref, temp,
                     file_pattern=rf"^{FILE_NAME.replace('.', '[.]')}$", force=True, quiet=True, transfer=True)
        fetched = Path(temp) / FILE_NAME
        if not fetched.is_file():
            raise UserError(f"{version} has no {FILE_NAME} in its output; nothing was submitted "
                            f"(see its log: {kernels_cli()} logs{version.flags()})")
        refuse_invalid(fetched, n_rows, source, args.data, None)
        run = kernel_run(args.runs, version.kernel, version.number) or _keep(fetched, version, status, args)
    check_wait(args)
    prepare_records(run)  # the record must be writable before Kaggle is asked, not after it said yes
    check_limits(session)
    message = args.message or default_message(run / FILE_NAME, run)

    def accepted(response) -> None:
        if not response.ref and not response.message:
            raise UserError(f"submitting {FILE_NAME} of {version}: Kaggle gave no answer; check "
                            f"'{command('submissions')}' before trying again")

    try:
        record = upload_and_record(
            session, f"submitting {FILE_NAME} of {version}", "competition_submit_code",
            (FILE_NAME, message, COMPETITION), {"kernel": version.kernel, "kernel_version": version.number,
                                                "quiet": True}, accepted, run,
            {"message": message, "file": FILE_NAME, "kernel": version.kernel, "kernel_version": version.number,
             "via": "code submission"})
    except UserError as exc:
        code = http_status(exc)
        if code is not None and 400 <= code < 500 and code not in (401, 429):
            said = str(exc).split(": ", 1)[-1]  # Kaggle's answer, without the "what" already said here
            raise UserError(f"Kaggle refused a code submission of {version} to {COMPETITION} ({said}); submit "
                            f"the file instead, validated and kept in {run}: {command('submit ' + quote(str(run)))}") from None
        raise
    print(f"submitted {FILE_NAME} of {version} to {COMPETITION}: {message!r}"
          + (f" (ref {record['ref']})" if record["ref"] else ""))
    return after_submit(session, args, record, run, run / FILE_NAME)


def _keep(fetched: Path, version: Version, status: str, args: argparse.Namespace) -> Path:
    """A new run folder for the kernel version holding the fetched submission.csv."""
    with run_folder(args.runs) as folder:
        shutil.copyfile(fetched, folder / FILE_NAME)
        write_json(folder / ORIGIN_NAME, origin_record(version, status, args.path, files=FILE_NAME))
        final = publish_name(folder)
    print(f"run folder: {final} ({FILE_NAME} of Kaggle kernel {version})")
    return final
