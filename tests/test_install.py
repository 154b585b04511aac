"""netwarden.service.install into a scratch root: every path the unit names exists there."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from netwarden.config import load_config
from netwarden.service.install import DEFAULT_MODEL, InstallError, Plan, install, main

REPO = Path(__file__).resolve().parent.parent


def _unit_settings(unit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, built from a copy (the build writes into its source tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.nbi", "*.nbc")
    for name in ("daemon", "training"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "wh"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {r.stderr.strip().splitlines()[-1:]}")
    return next((tmp / "wh").glob("netwarden-*.whl"))


@pytest.mark.slow
def test_install_into_scratch_root(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    rc = main([str(root), "--package", "netwarden", "--wheelhouse", str(wheel.parent), "--no-deps"])
    assert rc == 0
    unit = root / "usr/lib/systemd/system/netwarden.service"
    s = _unit_settings(unit)
    exe, *args = s["ExecStart"].split()
    assert exe == "/opt/netwarden/venv/bin/netwarden"
    assert (root / exe.lstrip("/")).is_file()
    assert args[args.index("--config") + 1] == "/etc/netwarden/netwarden.toml"
    cfg = load_config(root / "etc/netwarden/netwarden.toml")
    assert cfg.model.dir == Path("/etc/netwarden/model")
    assert (root / "etc/netwarden/model/manifest.json").is_file()
    assert (root / "etc/netwarden/model/model.onnx").is_file()
    for key, base in (
        ("StateDirectory", "var/lib"),
        ("CacheDirectory", "var/cache"),
        ("LogsDirectory", "var/log"),
        ("ConfigurationDirectory", "etc"),
    ):
        assert (root / base / s[key]).is_dir(), key
    assert (root / s["WorkingDirectory"].lstrip("/")).is_dir()
    assert s["Environment"].split("=", 1)[1] in {"1", "/var/cache/netwarden"}
    assert (root / "usr/lib/sysusers.d/netwarden.conf").read_text().startswith("u netwarden ")
    assert (root / "usr/share/doc/netwarden/service.md").is_file()
    # the venv holds the package (its dependencies come from the wheelhouse on a real sensor)
    pip = subprocess.run(
        [str(root / "opt/netwarden/venv/bin/python"), "-m", "pip", "show", "netwarden"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Version: 0.1.0" in pip.stdout
    if shutil.which("systemd-analyze"):
        test_unit = tmp_path / "netwarden.service"
        test_unit.write_text(unit.read_text().replace(exe, str(root / exe.lstrip("/"))))
        r = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(test_unit)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0 and not r.stderr.strip(), r.stderr


def test_existing_config_is_kept_and_venv_path_follows(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/netwarden").mkdir(parents=True)
    (root / "etc/netwarden/netwarden.toml").write_text("[logging]\nlevel = 'debug'\n")
    install(Plan(root=root, venv="/srv/nw/env", model=None))
    assert "level = 'debug'" in (root / "etc/netwarden/netwarden.toml").read_text()
    s = _unit_settings(root / "usr/lib/systemd/system/netwarden.service")
    assert s["ExecStart"].startswith("/srv/nw/env/bin/netwarden run ")
    assert not (root / "etc/netwarden/model").exists()
    install(Plan(root=root, force=True, model=DEFAULT_MODEL))
    assert "level = 'debug'" not in (root / "etc/netwarden/netwarden.toml").read_text()
    assert (root / "etc/netwarden/model/manifest.json").is_file()


def test_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="not a directory"):
        install(Plan(root=tmp_path / "missing"))
    with pytest.raises(InstallError, match=r"no manifest\.json"):
        install(Plan(root=tmp_path, model=tmp_path))
    with pytest.raises(InstallError, match="only works with ROOT=/"):
        install(Plan(root=tmp_path, model=None, create_user=True))
    assert main([str(tmp_path / "missing")]) == 1
