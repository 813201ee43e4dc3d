"""``qiki-harness init [DIR]``: a starter project for testing your own platform.

It writes a spec (BotSpec v2), a data contract, a smoke and a chaos scenario, a tiny example
service (``pong``, plain nats-py), a test of it and a pytest configuration, after which
``pytest -m smoke`` in DIR passes with qiki-harness installed. The files are templates
shipped as package data (``harness/templates/init/**.tmpl``, listed in pyproject's
package-data) so an installed wheel has them. Nothing is ever overwritten: when any target
exists, nothing is written and the error names every existing file.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from harness.errors import ConfigError

#: Suffix of template files in the package (so the starter's .py files are not modules of
#: the harness, and its scenario is not collected by the harness's own test run).
TEMPLATE_SUFFIX = ".tmpl"


class InitError(ConfigError):
    """``init`` cannot write its files (they exist, or DIR is not a directory): exit 2."""


@dataclass(frozen=True)
class StarterFile:
    """One file of the starter project: where it goes (relative, POSIX) and its text."""

    path: PurePosixPath
    text: str


def _walk(node: Traversable, prefix: PurePosixPath) -> list[StarterFile]:
    out: list[StarterFile] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name != "__pycache__":
                out.extend(_walk(child, prefix / child.name))
        elif child.name.endswith(TEMPLATE_SUFFIX):
            out.append(StarterFile(prefix / child.name[: -len(TEMPLATE_SUFFIX)],
                                   child.read_text(encoding="utf-8")))
    return out


def starter_files() -> list[StarterFile]:
    """Every file ``init`` writes, read from the package's templates."""
    root = resources.files("harness").joinpath("templates", "init")
    files = _walk(root, PurePosixPath())
    if not files:  # a wheel built without the package data: say so instead of writing nothing
        raise InitError(f"no starter templates found in {root}: the qiki-harness installation "
                        "lacks its package data (reinstall it)")
    return files


def init_project(directory: str | Path) -> list[Path]:
    """Write the starter project into ``directory`` (created if missing) and return the
    paths written. Raises :class:`InitError` naming every file that already exists (then
    nothing is written) or when ``directory`` is not a directory."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise InitError(f"{root} exists and is not a directory")
    files = starter_files()
    existing = [root / f.path for f in files if (root / f.path).exists()]
    if existing:
        names = "\n".join(f"  - {p}" for p in existing)
        raise InitError(
            f"refusing to overwrite {len(existing)} existing file(s) in {root}:\n{names}\n"
            "Hint: run init in an empty directory, or move these files away first."
        )
    written: list[Path] = []
    for f in files:
        target = root / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x": a file that appeared since the check above is still never overwritten.
        with target.open("x", encoding="utf-8") as out:
            out.write(f.text)
        written.append(target)
    return written


def next_steps(directory: str | Path) -> str:
    """What to run after ``init`` (printed by the CLI)."""
    d = Path(directory)
    cd = [] if d == Path(".") else [f"  cd {d}"]
    lines = [
        "Next (with qiki-harness installed in the active environment):",
        *cd,
        "  pytest -m smoke                          # the smoke scenario and the service's test",
        "  qiki-harness run scenarios/smoke.yaml    # the same scenario, with its HTML report",
        "  qiki-harness run scenarios/chaos.yaml    # pong killed under load: nothing lost",
        "Then replace pong/ with your service and describe your streams and event types in",
        'specs/platform.yaml (README: "Testing your own platform").',
    ]
    return "\n".join(lines)
