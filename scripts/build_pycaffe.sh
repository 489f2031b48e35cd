#!/usr/bin/env bash
# Build a CPU-only pycaffe from PyPI's brocolli-caffe 9.0.2 sdist and cache it
# as a wheel in ${XCONV_CACHE:-$HOME/.cache/xconv}/wheels/.
#
#   scripts/build_pycaffe.sh            # build (or reuse the cached wheel)
#   PYTHON=/path/to/python3.11 scripts/build_pycaffe.sh
#   FORCE=1 scripts/build_pycaffe.sh    # rebuild even if the wheel is cached
#
# Whether it builds or reuses the cached wheel, the script makes sure the
# Debian runtime libraries that _caffe.so links against are installed.
# Prints the wheel path as its last line of stdout.
set -euo pipefail

log() { echo "[pycaffe] $*" >&2; }
die() { echo "[pycaffe] ERROR: $*" >&2; exit 1; }

CAFFE_VERSION=9.0.2
SDIST_NAME=brocolli-caffe
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
NUMPY_PIN=numpy==1.26.4
PYTHON=${PYTHON:-python3}
CACHE_DIR=${XCONV_CACHE:-$HOME/.cache/xconv}
WHEEL_DIR=$CACHE_DIR/wheels
JOBS=${JOBS:-$(nproc)}

# Debian packages needed to compile (bookworm names).
BUILD_PKGS=(
  build-essential cmake protobuf-compiler libprotobuf-dev
  libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev
  libboost-python1.74-dev libboost-system1.74-dev libboost-thread1.74-dev
  libboost-filesystem1.74-dev libboost-regex1.74-dev
)
# Debian packages that own the libraries _caffe.so is linked against
# (readelf -d NEEDED + ldd + dpkg -S on the built module):
#   libglog.so.1 libprotobuf.so.32 libhdf5_serial.so.103 libhdf5_serial_hl.so.100
#   libopenblas.so.0 libboost_{python311,thread,filesystem}.so.1.74.0
# plus libgflags2.2, which glog pulls in.
RUNTIME_PKGS=(
  libgoogle-glog0v6 libgflags2.2 libprotobuf32
  libhdf5-103-1 libhdf5-hl-100 libopenblas0
  libboost-python1.74.0 libboost-thread1.74.0 libboost-filesystem1.74.0
)

# ---------------------------------------------------------------- apt helpers
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "not root and no sudo: cannot apt-get install"
  SUDO="sudo"
fi

ensure_debs() {  # ensure_debs <what> pkg...
  local what=$1; shift
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    log "$what Debian packages already installed (${#@})"
    return 0
  fi
  log "installing $what Debian packages: ${missing[*]}"
  local t0=$SECONDS
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
  log "apt-get done in $((SECONDS - t0)) s"
}

# Check that every library _caffe.so (inside a wheel) links against resolves.
check_wheel_libs() {  # check_wheel_libs <wheel>
  local wheel=$1 tmp
  tmp=$(mktemp -d)
  "$PYTHON" - "$wheel" "$tmp" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract("caffe/_caffe.so", sys.argv[2])
EOF
  local missing
  missing=$(ldd "$tmp/caffe/_caffe.so" | grep "not found" || true)
  rm -rf "$tmp"
  [[ -z $missing ]] || die "unresolved libraries in _caffe.so:"$'\n'"$missing"
  log "all shared libraries of _caffe.so resolve"
}

# ------------------------------------------------------------ cached wheel?
PYTAG=$("$PYTHON" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
PYVER=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PLAT=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_platform().replace("-", "_").replace(".", "_"))')
# PATCH_REV: bump when the source fixes below change, so cached wheels are rebuilt.
PATCH_REV=2
WHEEL_NAME=xconv_pycaffe-${CAFFE_VERSION}.post${PATCH_REV}-${PYTAG}-${PYTAG}-${PLAT}.whl
WHEEL=$WHEEL_DIR/$WHEEL_NAME

if [[ -f $WHEEL && -z ${FORCE:-} ]]; then
  log "cached wheel found: $WHEEL (skipping build)"
  ensure_debs runtime "${RUNTIME_PKGS[@]}"
  check_wheel_libs "$WHEEL"
  echo "$WHEEL"
  exit 0
fi

# -------------------------------------------------------------------- build
T_START=$SECONDS
log "building $WHEEL_NAME with $PYTHON (Python $PYVER), $JOBS jobs"
ensure_debs build "${BUILD_PKGS[@]}"
ensure_debs runtime "${RUNTIME_PKGS[@]}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xconv-pycaffe.XXXXXX")
if [[ -z ${KEEP_BUILD:-} ]]; then
  trap 'rm -rf "$WORK"' EXIT
else
  log "keeping build dir $WORK"
fi
cd "$WORK"

log "downloading $SDIST_NAME==$CAFFE_VERSION sdist"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: \
  "$SDIST_NAME==$CAFFE_VERSION" -d "$WORK/dl" >&2
SDIST=$(ls "$WORK"/dl/*.tar.gz)
echo "$SDIST_SHA256  $SDIST" | sha256sum -c --quiet - \
  || die "sha256 mismatch for $SDIST"
log "sha256 ok"
tar -xzf "$SDIST"
SRC=$WORK/$SDIST_NAME-$CAFFE_VERSION
[[ -d $SRC ]] || die "unexpected sdist layout"

# numpy headers: build against the same numpy the venv pins.
log "creating a throwaway build venv with $NUMPY_PIN"
"$PYTHON" -m venv "$WORK/bvenv"
"$WORK/bvenv/bin/python" -m pip install -q "$NUMPY_PIN" >&2
BPY=$WORK/bvenv/bin/python
PY_INC=$("$BPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INC=$("$BPY" -c 'import numpy; print(numpy.get_include())')
HDF5_INC=/usr/include/hdf5/serial
[[ -f $PY_INC/Python.h ]] || die "Python.h not found in $PY_INC"
[[ -f $HDF5_INC/hdf5.h ]] || die "hdf5.h not found in $HDF5_INC"

# ------------------------------------------------------------ source fixes
log "patching sources"
BOOST_PY=boost_python${PYTAG#cp}
[[ -e /usr/lib/x86_64-linux-gnu/lib$BOOST_PY.so || -e /usr/lib/$(gcc -dumpmachine)/lib$BOOST_PY.so ]] \
  || die "lib$BOOST_PY.so not found (libboost-python1.74-dev for Python $PYVER?)"
# 1) Debian names: boost_python3XY, hdf5_serial_hl / hdf5_serial.
sed -i -e "s/-lboost_python /-l$BOOST_PY /" \
       -e 's/-lhdf5_hl -lhdf5 /-lhdf5_serial_hl -lhdf5_serial /' \
       "$SRC/python/CMakeLists.txt"
grep -q -- "-l$BOOST_PY -lhdf5_serial_hl -lhdf5_serial " "$SRC/python/CMakeLists.txt" \
  || die "python/CMakeLists.txt patch did not apply"
# 2) net.cpp includes a gtest header it never uses.
sed -i '/#include "caffe\/test\/test_caffe_main.hpp"/d' "$SRC/src/caffe/net.cpp"
! grep -q test_caffe_main "$SRC/src/caffe/net.cpp" || die "net.cpp patch did not apply"
# 2b) io.cpp caps binary protos at 512 MB (protobuf's old default), so a VGG-16
#     caffemodel (~550 MB) cannot load; BVLC Caffe 1.0 reads up to INT_MAX.
sed -i 's/SetTotalBytesLimit(536870912)/SetTotalBytesLimit(INT_MAX)/' "$SRC/src/caffe/util/io.cpp"
! grep -q 'SetTotalBytesLimit(536870912)' "$SRC/src/caffe/util/io.cpp" || die "io.cpp patch did not apply"
grep -q '<climits>' "$SRC/src/caffe/util/io.cpp" || sed -i '0,/#include/s//#include <climits>\n#include/' "$SRC/src/caffe/util/io.cpp"
# 3) io.py: scikit-image / scipy only needed by load_image/resize_image.
"$BPY" - "$SRC/python/caffe/io.py" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
old = "import skimage.io\nfrom scipy.ndimage import zoom\n"
new = (
    "try:  # optional: only load_image() / resize_image() need them\n"
    "    import skimage\n"
    "    import skimage.io\n"
    "    import skimage.transform\n"
    "except ImportError:\n"
    "    skimage = None\n"
    "try:\n"
    "    from scipy.ndimage import zoom\n"
    "except ImportError:\n"
    "    zoom = None\n"
)
if old not in text:
    sys.exit("io.py: expected imports not found")
open(path, "w").write(text.replace(old, new, 1))
EOF
# The sdist ships a stale caffe_pb2.py (old descriptor API, rejected by
# protobuf >= 4) and py3.8 bytecode; the build regenerates caffe_pb2.py.
rm -rf "$SRC/python/caffe/proto/caffe_pb2.py" "$SRC"/python/caffe/__pycache__

# ---------------------------------------------------------------- configure
GEN=(-G "Unix Makefiles")
command -v ninja >/dev/null && GEN=(-G Ninja)
log "configuring (${GEN[*]})"
mkdir -p "$SRC/build"
cd "$SRC/build"
cmake "${GEN[@]}" .. \
  -DCMAKE_BUILD_TYPE=Release \
  -DCPU_ONLY=ON -DBUILD_python=ON -DBUILD_python_layer=OFF \
  -DUSE_OPENCV=OFF -DUSE_LMDB=OFF -DUSE_LEVELDB=OFF \
  -DPYTHON_VERSION="python$PYVER" \
  -DANACONDA_HOME="$WORK/no-conda" \
  -DCMAKE_CXX_FLAGS="-I$PY_INC -I$NP_INC -I$HDF5_INC" \
  >"$WORK/cmake.log" 2>&1 || { tail -40 "$WORK/cmake.log" >&2; die "cmake configure failed"; }

log "compiling (~5 min on 2 cores)"
T_BUILD=$SECONDS
cmake --build . --target pycaffe -j "$JOBS" >"$WORK/build.log" 2>&1 \
  || { grep -E "error|Error" "$WORK/build.log" | head -30 >&2; tail -20 "$WORK/build.log" >&2; die "build failed"; }
log "compiled in $((SECONDS - T_BUILD)) s"

SO=$SRC/build/lib/_caffe.so
PB2=$SRC/build/include/caffe/proto/caffe_pb2.py
[[ -f $SO ]] || die "missing $SO"
[[ -f $PB2 ]] || die "missing $PB2"

# ------------------------------------------------------------ wheel staging
log "staging the wheel"
STAGE=$WORK/stage
mkdir -p "$STAGE/caffe/proto"
for f in "$SRC"/python/caffe/*.py; do cp "$f" "$STAGE/caffe/"; done
if [[ -f $SRC/python/caffe/imagenet/ilsvrc_2012_mean.npy ]]; then
  mkdir -p "$STAGE/caffe/imagenet"
  cp "$SRC/python/caffe/imagenet/ilsvrc_2012_mean.npy" "$STAGE/caffe/imagenet/"
fi
cp "$PB2" "$STAGE/caffe/proto/caffe_pb2.py"
: >"$STAGE/caffe/proto/__init__.py"
cp -L "$SO" "$STAGE/caffe/_caffe.so"
strip --strip-unneeded "$STAGE/caffe/_caffe.so"

# Smoke test in the build venv with the same protobuf the project pins.
log "smoke test (import caffe with protobuf==7.36.2, $NUMPY_PIN)"
"$BPY" -m pip install -q protobuf==7.36.2 six >&2
(cd "$WORK" && GLOG_minloglevel=2 PYTHONPATH="$STAGE" "$BPY" -c '
import caffe, google.protobuf as pb
from caffe.proto import caffe_pb2
assert caffe_pb2.PoolingParameter().ceil_mode is True
print("[pycaffe] smoke: caffe", caffe.__version__, "protobuf", pb.__version__,
      "layers", len(caffe.layer_type_list()))
' >&2) || die "smoke test failed"

# -------------------------------------------------------------- wheel write
mkdir -p "$WHEEL_DIR"
"$BPY" - "$STAGE" "$WHEEL.tmp.$$" "${CAFFE_VERSION}.post${PATCH_REV}" "$PYTAG" "$PLAT" <<'EOF'
"""Write a binary wheel from a staged tree (no setuptools needed)."""
import base64, hashlib, os, sys, zipfile

stage, out, version, pytag, plat = sys.argv[1:]
dist = "xconv_pycaffe"
distinfo = f"{dist}-{version}.dist-info"
tag = f"{pytag}-{pytag}-{plat}"
meta = {
    "METADATA": "\n".join([
        "Metadata-Version: 2.1",
        "Name: xconv-pycaffe",
        f"Version: {version}",
        "Summary: CPU-only pycaffe built from brocolli-caffe "
        f"{version} for xconv",
        "License: BSD-2-Clause",
        "Requires-Python: ==" + pytag[2] + "." + pytag[3:] + ".*",
        "Requires-Dist: numpy",
        "Requires-Dist: protobuf",
        "Requires-Dist: six",
        "", ""]),
    "WHEEL": "\n".join([
        "Wheel-Version: 1.0",
        "Generator: xconv build_pycaffe.sh",
        "Root-Is-Purelib: false",
        f"Tag: {tag}",
        "", ""]),
    "top_level.txt": "caffe\n",
}

def digest(data):
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + h.decode()

records = []
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk(stage):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            arc = os.path.relpath(full, stage)
            data = open(full, "rb").read()
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (os.stat(full).st_mode & 0o777 | 0o100000) << 16
            z.writestr(info, data)
            records.append(f"{arc},{digest(data)},{len(data)}")
    for name, text in meta.items():
        data = text.encode()
        z.writestr(f"{distinfo}/{name}", data)
        records.append(f"{distinfo}/{name},{digest(data)},{len(data)}")
    records.append(f"{distinfo}/RECORD,,")
    z.writestr(f"{distinfo}/RECORD", "\n".join(records) + "\n")
EOF
mv -f "$WHEEL.tmp.$$" "$WHEEL"
check_wheel_libs "$WHEEL"
log "wheel: $WHEEL ($(du -h "$WHEEL" | cut -f1)), total $((SECONDS - T_START)) s"
echo "$WHEEL"
