"""`digit-recognizer leaderboard`: the top of the public leaderboard (the client's
competition_leaderboard_view) and where you stand on the whole of it (competition_leaderboard_download:
your best public score, your rank, how many teams).
"""
import argparse
import csv
import io
import tempfile
import zipfile
from pathlib import Path

from ..errors import UserError
from ..invocation import command
from .client import COMPETITION, Bounded, KaggleSession, connect

TOP_TEAMS = Bounded(int, 1, 100, "a number of teams")  # one page of Kaggle's leaderboard
from ..runs import score_value


def cmd_leaderboard(args: argparse.Namespace) -> int:
    session = connect()
    top = session.call("reading the leaderboard", "competition_leaderboard_view", COMPETITION,
                       page_size=args.top) or []
    rows = [(str(i), e.team_name or str(e.team_id), e.score or "-",
             e.submission_date.strftime("%Y-%m-%d") if e.submission_date else "")
            for i, e in enumerate((e for e in top if e), start=1)]
    board, problem = read_board(session)
    print(f"{COMPETITION} public leaderboard" + (f" ({len(board)} teams)" if board else "") + ":")
    widths = [max(len(r[i]) for r in [("rank", "team", "score", "date"), *rows]) for i in range(4)]
    for row in [("rank", "team", "score", "date"), *rows]:
        print("  " + "  ".join(v.rjust(w) if i in (0, 2) else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    items = [s for s in session.call("listing your submissions", "competition_submissions", COMPETITION) or [] if s]
    scores = [score_value(s.public_score) for s in items]
    best = max((s for s in scores if s is not None), default=None)
    team = next((s.team_name for s in items if s.team_name), None)
    who = f"you ({session.username or team or 'this account'})"
    if best is None:
        print(f"{who}: no scored submission yet; '{command('submit')}' makes one")
        return 0
    if not board:
        print(f"{who}: best public score {best:.5f}; rank unknown ({problem})")
        return 0
    rank = rank_of(board, best, team, session.username)
    print(f"{who}: best public score {best:.5f}, rank {rank} of {len(board)} teams")
    return 0


def read_board(session: KaggleSession) -> tuple[list[dict] | None, str]:
    """The whole public leaderboard as [{team, members, score}], best first; or None and why not."""
    try:
        with tempfile.TemporaryDirectory(prefix="digit-recognizer-board-", ignore_cleanup_errors=True) as temp:
            session.call("downloading the leaderboard", "competition_leaderboard_download", COMPETITION, temp,
                         transfer=True)
            return parse_board(next(Path(temp).glob("*.zip"), None)), ""
    except UserError as exc:
        return None, str(exc)


def parse_board(archive: Path | None) -> list[dict]:
    if archive is None:
        raise UserError("the leaderboard download held no zip")
    try:
        with zipfile.ZipFile(archive) as zipped:
            name = next((n for n in zipped.namelist() if n.endswith(".csv")), None)
            if name is None:
                raise UserError("the leaderboard zip holds no CSV")
            text = zipped.read(name).decode("utf-8-sig", errors="replace")
    except zipfile.BadZipFile:
        raise UserError("the leaderboard download is not a readable zip") from None
    board = []
    for row in csv.DictReader(io.StringIO(text)):
        score = score_value(row.get("Score"))
        if score is not None:
            board.append({"team": row.get("TeamName") or row.get("TeamId") or "",
                          "members": (row.get("TeamMemberUserNames") or "").replace(",", " ").split(),
                          "score": score})
    return sorted(board, key=lambda e: -e["score"])  # accuracy: higher is better


def rank_of(board: list[dict], score: float, team: str | None, username: str | None) -> int:
    """The place `score` holds on the board: one more than the other teams that score higher."""
    mine = {name for name in (team, username) if name}
    return 1 + sum(1 for e in board if e["score"] > score and e["team"] not in mine
                   and not mine.intersection(e["members"]))


def leaderboard_flags(board: argparse.ArgumentParser) -> None:
    board.add_argument("--top", type=TOP_TEAMS, default=5, metavar="N",
                       help=f"how many of the top teams to show, 1 to {TOP_TEAMS.high:g} (default: 5)")
    board.set_defaults(handler=cmd_leaderboard)
