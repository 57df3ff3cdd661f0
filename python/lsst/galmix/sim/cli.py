"""Command line ``galmix-make-repo``: build a simulated Butler repository."""

from __future__ import annotations

__all__ = ("main",)

import argparse
import shutil
import sys
import time
from pathlib import Path

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


def _claim(repo: str) -> bool | None:
    """Check a local repository path before building; return whether this run creates the directory.

    Returns `True` if the directory does not exist yet, `False` if it is an existing empty directory,
    `None` for a non-local URI (nothing to clean up here).

    Raises
    ------
    FileExistsError
        The path is a file, or a directory that is not empty.
    NotADirectoryError
        A parent of the path is a file.
    """
    if "://" in repo and not repo.startswith("file://"):
        return None
    path = Path(repo.removeprefix("file://"))
    if path.is_file() or (path.is_symlink() and not path.is_dir()):
        raise FileExistsError(f"Repository path {repo!r} is a file; give a new directory.")
    if path.is_dir():
        if any(path.iterdir()):
            raise FileExistsError(f"Repository path {repo!r} already exists and is not empty; choose a new one.")
        return False
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"Repository path {repo!r}: {str(parent)!r} is a file, not a directory.")
    return True


def _release(repo: str, made: bool | None) -> None:
    """Remove what a failed build wrote: the directory if this run created it, else its contents."""
    if made is None:
        return
    path = Path(repo.removeprefix("file://"))
    if not path.is_dir():
        return
    if made:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command.

    Parameters
    ----------
    argv
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : `int`
        0 on success; 2 on a bad argument or a failed build (one line on stderr; a partly built
        repository is removed so the command can be re-run); 130 when interrupted.
    """
    args = _parser().parse_args(argv)
    progress = _Progress(sys.stderr, args.quiet)
    try:
        made = _claim(args.repo)
        try:
            summary = make_repo(
                args.repo,
                size=args.size,
                bands=args.bands,
                seed=args.seed,
                registry=args.registry,
                progress=progress,
            )
        except BaseException:
            # A half-built repository would block the re-run ("exists and is not empty"): remove what
            # this run created, whatever stopped it (an error, Ctrl-C).
            _release(args.repo, made)
            raise
    except (ValueError, OSError) as err:
        progress.done()
        print(f"galmix-make-repo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.done()
        print("galmix-make-repo: interrupted; the partial repository was removed", file=sys.stderr)
        return 130
    progress.done()
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
