"""Command line ``galmix-make-repo``: build a simulated Butler repository."""

from __future__ import annotations

__all__ = ("main",)

import argparse
import sys
import time

from ..data.skymap import SIZES
from .make_repo import make_repo


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="galmix-make-repo",
        description="Create a ci_imsim-style simulated Butler repository (truth_summary and deep_coadd_cell "
        "in RUN galmix/sim).",
    )
    parser.add_argument("repo", help="Path of the new repository (must not exist or be empty).")
    parser.add_argument("--size", default="ci", help=f"Size preset: {', '.join(SIZES)} (default: ci).")
    parser.add_argument("--bands", default="ugrizy", help="Bands of the coadds (default: ugrizy).")
    parser.add_argument("--seed", type=int, default=1, help="Random seed (default: 1).")
    parser.add_argument(
        "--registry", default=None, help="Registry database URL (default: SQLite inside the repository)."
    )
    parser.add_argument("--quiet", action="store_true", help="Print only the final summary.")
    return parser


class _Progress:
    """Progress lines with elapsed time; rewrites one line on a terminal."""

    def __init__(self, stream, quiet: bool) -> None:
        self._stream = stream
        self._quiet = quiet
        self._tty = stream.isatty()
        self._start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self._quiet:
            return
        line = f"[{time.perf_counter() - self._start:7.1f} s] {message}"
        if self._tty:
            self._stream.write("\r\033[K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def done(self) -> None:
        if self._tty and not self._quiet:
            self._stream.write("\n")


def main(argv: list[str] | None = None) -> int:
    """Run the command.

    Parameters
    ----------
    argv
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : `int`
        0 on success, 2 on a bad argument (message on stderr).
    """
    args = _parser().parse_args(argv)
    progress = _Progress(sys.stderr, args.quiet)
    try:
        summary = make_repo(
            args.repo,
            size=args.size,
            bands=args.bands,
            seed=args.seed,
            registry=args.registry,
            progress=progress,
        )
    except (ValueError, FileExistsError) as err:
        progress.done()
        print(f"galmix-make-repo: error: {err}", file=sys.stderr)
        return 2
    progress.done()
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
