"""Entry point of the `rtcbench` command.

Every command module exposes ``register(app: typer.Typer)``. `main()` runs the app and turns a
`UserError` into a one-paragraph message on stderr with exit code 2 and no traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from rtcbench.errors import UserError

app = typer.Typer(
    name="rtcbench",
    help="Trace-driven benchmark harness for real-time action chunking under random, long-tailed inference latency.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain text: `pip install -e ".[ray]"` keeps its brackets
)


@app.command("version")
def version_cmd() -> None:
    """Print the rtcbench version."""
    from rtcbench import __version__

    print(__version__)


@app.command("levels")
def levels_cmd() -> None:
    """List the kinetix-env built-in level names, then the project's rtc/ levels (rtcbench/project_levels.py;
    a scenario may also name a level JSON path). Any level may take the suffix ':packed' (e.g.
    l/h17_unicycle:packed): the same physics in arrays cut to the level's own entities, several times faster
    for size-L levels (see rtcbench/levels.py).

    A level with a shipped BC policy (policies/<level_slug>/bc.msgpack, or policies/multiexpert/<level_slug>/
    in a checkout) is followed by "policy:", the level name that policy was trained on (with :packed where it
    was) and the checkpoint paths."""
    from pathlib import Path

    from rtcbench.levels import PACKED_SUFFIX, known_levels
    from rtcbench.shipped import shipped_policies

    def shown(path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    names = known_levels()
    width = max((len(n) for n in names), default=0)
    for name in names:
        marks = [f"{variant} -> {', '.join(shown(p) for p in found)}"
                 for variant in (name, name + PACKED_SUFFIX) if (found := shipped_policies(variant))]
        print(f"{name:<{width}}  policy: {'; '.join(marks)}" if marks else name)


_registered = False


def _register_all() -> None:
    global _registered
    if _registered:
        return
    _registered = True
    # Imported here so `rtcbench --help` stays cheap: command modules import JAX lazily inside commands.
    from rtcbench.cli import (
        companion_cmds,
        engine_cmds,
        merge_cmds,
        policy_cmds,
        publish_cmds,
        replay_cmds,
        results_cmds,
        store_cmds,
    )

    companion_cmds.register(policy_cmds.policy_app)  # train-a2c2, train-vlash under `rtcbench policy`
    for module in (replay_cmds, policy_cmds, engine_cmds, store_cmds, merge_cmds, results_cmds, publish_cmds):
        module.register(app)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    logging.getLogger("absl").setLevel(logging.ERROR)  # kinetix imports grain, which warns at import
    _register_all()
    try:
        # In non-standalone mode click returns the exit code of typer.Exit (or the command's return value).
        result = app(args=argv, standalone_mode=False)
        return result if isinstance(result, int) else 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:  # typer/click exits (e.g. --help)
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # typer vendors click; its usage errors carry `show()` and an exit code (2 for usage errors).
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            args = sys.argv[1:] if argv is None else argv
            if int(exc.exit_code) == 2 and args[:1] == ["compare"]:
                return 4  # compare's 2 means "invalid or not comparable results"; its usage errors are 4
            return int(exc.exit_code)
        if type(exc).__name__ in ("Exit", "Abort"):
            return int(getattr(exc, "exit_code", 1))
        raise


if __name__ == "__main__":
    sys.exit(main())
