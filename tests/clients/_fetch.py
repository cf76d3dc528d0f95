"""Fetch the clients' code from package registries, once, into a cache outside git.

Nothing third-party is kept in the repository: the documentation examples and CPython's
``test_concurrent_futures`` come from Debian's packages (``apt-get download`` + ``dpkg -x``:
no install, nothing written outside the cache), the library test suites from PyPI sdists
(``pip download --no-binary :all: --no-deps NAME==VERSION``). Each is unpacked into a
temporary folder beside its final place and renamed into it, so that two runs fetching at
once (other test runs share the checkout) never see half an archive.

The cache is ``.cache/clients/`` at the repository root (in .gitignore), or the folder
named by ``POLYPROC_CLIENTS_CACHE``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("POLYPROC_CLIENTS_CACHE") or ROOT / ".cache" / "clients")


class FetchError(RuntimeError):
    """A client's code could not be had from its registry."""


def _publish(unpacked: Path, final: Path) -> Path:
    """Move *unpacked* to *final* in one rename; a concurrent fetch that got there first
    keeps its copy (the caller's temporary folder, *unpacked* included, is removed)."""
    try:
        os.rename(unpacked, final)
    except OSError:
        if not final.is_dir():
            raise
    return final


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def debian_package(name: str) -> Path:
    """The files of Debian package *name* (the candidate version), unpacked; returns the
    folder that stands for ``/`` (so ``usr/share/doc/...`` is below it).

    ``apt-get download`` needs the package lists: on a machine where ``apt-get update``
    never ran it fails, and the lists are fetched once, then the download is tried again.
    """
    final = CACHE / "deb" / name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        got = _run(["apt-get", "download", name], tmp)
        if got.returncode != 0:
            _run(["apt-get", "update", "-qq"], tmp)
            got = _run(["apt-get", "download", name], tmp)
        debs = sorted(tmp.glob("*.deb"))
        if got.returncode != 0 or not debs:
            raise FetchError(f"apt-get download {name} failed: {got.stderr.strip()[-500:]}")
        root = tmp / "root"
        unpacked = _run(["dpkg-deb", "-x", str(debs[0]), str(root)], tmp)
        if unpacked.returncode != 0:
            raise FetchError(f"dpkg-deb -x {debs[0].name} failed: {unpacked.stderr}")
        # Which version the cache holds, for the report.
        (root / "FETCHED_FROM").write_text(debs[0].name + "\n")
        return _publish(root, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sdist(name: str, version: str) -> Path:
    """The unpacked source distribution of *name* == *version* from PyPI; returns its
    top folder (the one with setup.py / pyproject.toml and, for the clients, the tests)."""
    final = CACHE / "sdist" / f"{name}-{version}"
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=final.parent))
    try:
        got = _run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
             "--no-deps", f"{name}=={version}", "-d", str(tmp)],
            tmp,
        )
        archives = sorted(tmp.glob("*.tar.gz"))
        if got.returncode != 0 or not archives:
            raise FetchError(f"pip download {name}=={version} failed: {got.stderr[-500:]}")
        with tarfile.open(archives[0]) as archive:
            archive.extractall(tmp / "x", filter="data")
        (top,) = (tmp / "x").iterdir()
        return _publish(top, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
