#!/usr/bin/env bash
# The two commands of the README, on a fresh Debian 12 machine:
#   tools/dev.sh run  [spoold flags]  install what is missing, build, run spoold on ./spool-data
#   tools/dev.sh test [ctest flags]   install what is missing, build, run every test
# and the pieces they are made of: tools/dev.sh setup | build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests need.
PACKAGES=(
  g++ cmake make pkg-config
  librocksdb-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libssl-dev libcli11-dev libjemalloc-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-grpcio python3-protobuf openssl
)

setup() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "dev.sh: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {
  cmake -S . -B build -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
  cmake --build build -j "$(nproc)"
}

case "${1:-}" in
  setup) setup ;;
  build) setup; build ;;
  run)
    shift
    setup; build
    exec build/bin/spoold --data-dir "${SPOOL_DATA_DIR:-spool-data}" "$@"
    ;;
  test)
    shift
    setup; build
    exec ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
    ;;
  *)
    echo "usage: tools/dev.sh run [spoold flags] | test [ctest flags] | setup | build" >&2
    exit 2
    ;;
esac
