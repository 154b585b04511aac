"""Install netwarden as a systemd service into a root directory (``/`` on the sensor itself).

``python -m netwarden.service.install ROOT [options]`` lays out::

    ROOT/usr/lib/systemd/system/netwarden.service   the unit (ExecStart points into the venv)
    ROOT/usr/lib/sysusers.d/netwarden.conf           the unprivileged system user and group
    ROOT/etc/netwarden/netwarden.toml                the config (kept if it exists)
    ROOT/etc/netwarden/model/                        the model directory (manifest + ONNX)
    ROOT/var/lib/netwarden, /var/cache/netwarden, /var/log/netwarden
    ROOT/opt/netwarden/venv                          with --wheelhouse or --package: a venv
    ROOT/usr/share/doc/netwarden/service.md          the operator's notes

A venv is not relocatable (its scripts name their interpreter by absolute path), so build it
where it will run: on the sensor (``ROOT=/``) or inside the image's chroot.  With ``ROOT=/``,
``--create-user`` also runs ``systemd-sysusers`` (or ``useradd``); then run
``systemctl daemon-reload && systemctl enable --now netwarden``.

The unit and config templates come from the source checkout (``systemd/``); ``--unit`` and
``--config`` name other files.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("netwarden.install")

CHECKOUT = Path(__file__).resolve().parents[3]
DEFAULT_UNIT = CHECKOUT / "systemd" / "netwarden.service"
DEFAULT_CONFIG = CHECKOUT / "systemd" / "netwarden.toml"
DEFAULT_MODEL = CHECKOUT / "models" / "netwarden-cic"
DEFAULT_DOC = CHECKOUT / "docs" / "service.md"
DEFAULT_VENV = "/opt/netwarden/venv"
UNIT_VENV = "/opt/netwarden/venv"  # the path the unit template's ExecStart uses
USER = "netwarden"
SYSUSERS = f'u {USER} - "netwarden sensor" /var/lib/netwarden\n'
STATE_DIRS = ("var/lib/netwarden", "var/cache/netwarden", "var/log/netwarden")


class InstallError(Exception):
    """A template is missing, the venv cannot be built, or the root is unusable."""


@dataclass
class Plan:
    """What to install; paths in ``venv`` are as seen on the target (under ``root``)."""

    root: Path
    venv: str = DEFAULT_VENV
    unit: Path = DEFAULT_UNIT
    config: Path = DEFAULT_CONFIG
    model: Path | None = DEFAULT_MODEL
    doc: Path | None = DEFAULT_DOC
    package: str | None = None  # pip requirement; None: do not build a venv
    wheelhouse: Path | None = None  # offline install from this folder
    no_deps: bool = False
    create_user: bool = False
    force: bool = False
    written: list[Path] = field(default_factory=list)

    def target(self, path: str) -> Path:
        """``path`` (absolute on the target) under the root."""
        return self.root / path.lstrip("/")


def install(plan: Plan) -> list[Path]:
    """Run every step; returns the files and folders written.

    Raises:
        InstallError: with a one-line reason.
    """
    if not plan.root.is_dir():
        raise InstallError(f"root {plan.root} is not a directory")
    for step in (_unit, _sysusers, _dirs, _config, _model, _doc, _venv, _user):
        step(plan)
    return plan.written


def _write(plan: Plan, dest: Path, text: str, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    dest.chmod(mode)
    plan.written.append(dest)


def _unit(plan: Plan) -> None:
    text = _read(plan.unit, "unit template")
    if UNIT_VENV + "/bin/netwarden" not in text:
        raise InstallError(f"{plan.unit}: ExecStart does not run {UNIT_VENV}/bin/netwarden")
    text = text.replace(UNIT_VENV + "/", plan.venv.rstrip("/") + "/")
    _write(plan, plan.target("/usr/lib/systemd/system/netwarden.service"), text, 0o644)


def _sysusers(plan: Plan) -> None:
    _write(plan, plan.target("/usr/lib/sysusers.d/netwarden.conf"), SYSUSERS, 0o644)


def _dirs(plan: Plan) -> None:
    # systemd creates and chowns these at start (StateDirectory= etc.); made here so that a
    # pre-built image holds them and the install can be checked.
    for d in (*STATE_DIRS, "etc/netwarden"):
        p = plan.root / d
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(0o750)
        plan.written.append(p)


def _config(plan: Plan) -> None:
    dest = plan.target("/etc/netwarden/netwarden.toml")
    if dest.exists() and not plan.force:
        log.info("keeping existing %s (use --force to replace it)", dest)
        return
    _write(plan, dest, _read(plan.config, "config template"), 0o640)


def _model(plan: Plan) -> None:
    if plan.model is None:
        return
    if not (plan.model / "manifest.json").is_file():
        raise InstallError(f"model {plan.model}: no manifest.json (not a model directory)")
    dest = plan.target("/etc/netwarden/model")
    if dest.exists():
        if not plan.force:
            log.info("keeping existing %s (use --force to replace it)", dest)
            return
        shutil.rmtree(dest)
    shutil.copytree(plan.model, dest)
    plan.written.append(dest)


def _doc(plan: Plan) -> None:
    if plan.doc is not None and plan.doc.is_file():
        _write(
            plan, plan.target("/usr/share/doc/netwarden/service.md"), plan.doc.read_text(), 0o644
        )


def _venv(plan: Plan) -> None:
    venv = plan.target(plan.venv)
    if plan.package is None:
        if not (venv / "bin" / "netwarden").exists():
            log.warning(
                "%s/bin/netwarden does not exist: build the venv there (--package) "
                "before starting the unit",
                plan.venv,
            )
        return
    if not (venv / "bin" / "python").exists():
        _run([_base_python(), "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if plan.wheelhouse is not None:
        pip += ["--no-index", "--find-links", str(plan.wheelhouse)]
    if plan.no_deps:
        pip.append("--no-deps")
    _run([*pip, plan.package])
    plan.written.append(venv)


def _user(plan: Plan) -> None:
    if not plan.create_user:
        return
    if plan.root.resolve() != Path("/"):
        raise InstallError(
            "--create-user only works with ROOT=/ (images run systemd-sysusers "
            "at boot from usr/lib/sysusers.d)"
        )
    if shutil.which("systemd-sysusers"):
        _run(["systemd-sysusers", "/usr/lib/sysusers.d/netwarden.conf"])
    else:
        _run(
            [
                "useradd",
                "--system",
                "--home-dir",
                "/var/lib/netwarden",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                USER,
            ]
        )


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise InstallError(f"{what} {path}: {e.strerror or e}") from None


def _run(cmd: Sequence[str]) -> None:
    log.info("running %s", " ".join(cmd))
    r = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise InstallError(
            f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed "
            f"(exit {r.returncode}): {' | '.join(tail)}"
        )


def _base_python() -> str:
    """The interpreter this one's venv was made from (venvs are made from a base Python)."""
    if sys.prefix == sys.base_prefix:
        return sys.executable
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m netwarden.service.install",
        description="Install the netwarden service into ROOT.",
    )
    p.add_argument("root", type=Path, help="root directory: / on the sensor, or an image tree")
    p.add_argument("--venv", default=DEFAULT_VENV, help=f"venv path on the target ({DEFAULT_VENV})")
    p.add_argument("--package", help="build the venv and pip-install this requirement or wheel")
    p.add_argument("--wheelhouse", type=Path, help="install offline from this wheel folder")
    p.add_argument("--no-deps", action="store_true", help="pip --no-deps (tests)")
    p.add_argument("--unit", type=Path, default=DEFAULT_UNIT, help="unit template")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config to install")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model directory")
    p.add_argument("--create-user", action="store_true", help="create the user now (ROOT=/)")
    p.add_argument("--force", action="store_true", help="replace an existing config and model")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    a = build_parser().parse_args(argv)
    plan = Plan(
        root=a.root,
        venv=a.venv,
        unit=a.unit,
        config=a.config,
        model=a.model,
        package=a.package,
        wheelhouse=a.wheelhouse,
        no_deps=a.no_deps,
        create_user=a.create_user,
        force=a.force,
    )
    try:
        written = install(plan)
    except InstallError as e:
        log.error("install failed: %s", e)
        return 1
    log.info("installed %d paths under %s", len(written), a.root)
    if a.root.resolve() == Path("/"):
        log.info("next: systemctl daemon-reload && systemctl enable --now netwarden")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
