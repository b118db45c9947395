"""The built wheel: one top-level package, every package folder of the repository in it, the data
files beside their code, and no `connectors` or `scenarios` of ours on a user's import path."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Where each import name's folder sits in the repository.
FOLDERS = {"streamsynth": "streamsynth", "streamsynth.connectors": "connectors", "streamsynth.scenarios": "scenarios"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # The installed setuptools builds it: no network, and the same backend `pip install -e` used.
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("streamsynth-*.whl")
    return built


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_has_one_top_level_package(wheel):
    tops = {PurePosixPath(name).parts[0] for name in _names(wheel)}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"streamsynth"}


def test_every_package_folder_and_data_file_is_in_the_wheel(wheel):
    names = set(_names(wheel))
    expected = set()
    for package, folder in FOLDERS.items():
        base = ROOT / folder
        for path in base.rglob("*"):
            if "__pycache__" in path.parts or not path.is_file() or path.suffix not in {".py", ".yaml", ".json"}:
                continue
            inside = path.relative_to(base).as_posix()
            if package == "streamsynth" and inside.split("/")[0] in {"connectors", "scenarios"}:
                continue
            expected.add(f"{package.replace('.', '/')}/{inside}")
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (add the package to pyproject.toml's [tool.setuptools] packages): {missing}"


def test_connectors_and_scenarios_import_only_under_streamsynth(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    # -S and -I: no site-packages (so not this checkout's editable install) and not the current
    # folder; only the unpacked wheel is on the path.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import importlib.util as u; "
        "print(u.find_spec('connectors'), u.find_spec('scenarios'), "
        "u.find_spec('streamsynth.connectors') is not None, u.find_spec('streamsynth.scenarios') is not None)"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-I", "-c", code, str(site)], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "None", "True", "True"]
