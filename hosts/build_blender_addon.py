"""Build the Blender add-on zip: ``dist/aurora_dcc_blender-<version>.zip`` (``make blender-addon``).

The zip holds one folder, ``aurora_dcc_blender/``, so that it installs both
ways: as a Blender 4.2+ extension (its ``blender_manifest.toml``; Blender
installs the wheel the manifest lists) and as a legacy add-on in Blender
3.x (the folder becomes the add-on package; its ``__init__.py`` imports
aurora_dcc from the wheel when aurora_dcc is not installed). The wheel is
built here, from the package's files, without network or build tools: a
pure-Python wheel is a zip with a ``.dist-info`` folder. It declares no
dependencies: Blender runs the Qt-free part of aurora_dcc, and orjson is
optional.

Usage::

    python hosts/build_blender_addon.py            # prints the zip's path
    python hosts/build_blender_addon.py --out /tmp  # elsewhere
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "hosts" / "blender"
PACKAGE = ROOT / "aurora_dcc"
FOLDER = "aurora_dcc_blender"


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit("pyproject.toml has no version")
    return match.group(1)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(version: str) -> tuple[str, bytes]:
    """The aurora_dcc wheel (file name, bytes), from the files under ``aurora_dcc/``."""
    dist_info = f"aurora_dcc-{version}.dist-info"
    files: dict[str, bytes] = {}
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".typed"} and "__pycache__" not in path.parts:
            files[path.relative_to(ROOT).as_posix()] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = (
        "Metadata-Version: 2.1\n"
        "Name: aurora_dcc\n"
        f"Version: {version}\n"
        "Summary: aurora_dcc's IPC layer, as the Blender add-on carries it\n"
        "Requires-Python: >=3.9\n"
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\n"
        b"Generator: aurora_dcc hosts/build_blender_addon.py\n"
        b"Root-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    record = [_record_line(name, data) for name, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return f"aurora_dcc-{version}-py3-none-any.whl", buffer.getvalue()


def manifest(version: str, wheel_name: str) -> str:
    """hosts/blender/blender_manifest.toml with this version and wheel."""
    text = (ADDON / "blender_manifest.toml").read_text(encoding="utf-8")
    text = re.sub(r'^version = ".*"$', f'version = "{version}"', text, flags=re.MULTILINE)
    return re.sub(
        r"^wheels = \[.*\]$", f'wheels = ["./wheels/{wheel_name}"]', text, flags=re.MULTILINE
    )


def build(out_dir: Path) -> Path:
    version = project_version()
    wheel_name, wheel = build_wheel(version)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{FOLDER}-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as addon:
        addon.writestr(f"{FOLDER}/__init__.py", (ADDON / "__init__.py").read_bytes())
        addon.writestr(f"{FOLDER}/blender_manifest.toml", manifest(version, wheel_name))
        addon.writestr(f"{FOLDER}/wheels/{wheel_name}", wheel)
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the zip")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
