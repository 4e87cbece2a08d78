#!/usr/bin/env bash
# The two commands of the README, on a fresh Debian 12 machine:
#   tools/dev.sh run  [spoold flags]  install what is missing, build, run spoold on ./spool-data
#   tools/dev.sh test [ctest flags]   install what is missing, build, run every test; then the
#                                     unit, storage and integration tests built with ASan and
#                                     UBSan, and each libFuzzer target for 40 s
# and the pieces they are made of: tools/dev.sh setup | build. Also:
#   tools/dev.sh sanitize             the whole suite built with ASan and UBSan (build-asan/)
#   tools/dev.sh fuzz [SECONDS]       each libFuzzer target for SECONDS (60) on a copy of its
#                                     corpus (clang, build-fuzz/); new crashes are left in
#                                     build-fuzz/found/ to be added to tests/fuzz/corpus/
#   tools/dev.sh torture [CYCLES]     crash torture, long mode: CYCLES (500) kill -9 cycles with
#                                     storage faults and the history checker (README
#                                     "Reliability"); CI runs the short mode (ctest -L torture)
#   tools/dev.sh peers [peers.py flags]  Spool beside Redis and PostgreSQL on this machine
#                                     (tools/bench/peers.py; BENCHMARKS.md, "The durable peers")
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build and the tests need.
PACKAGES=(
  g++ cmake make pkg-config
  librocksdb-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libssl-dev libcli11-dev libjemalloc-dev libgtest-dev libgmock-dev libbenchmark-dev
  libboost-dev prometheus-cpp-dev  # the HTTP layer (Asio/Beast) and /metrics
  python3 python3-grpcio python3-protobuf openssl
  libclang-rt-14-dev faketime
  valgrind  # tools/bench/count_instructions.py: instructions per message, callgrind
)
# libclang-rt-14-dev above brings fuzzer/FuzzedDataProvider.h, which the ordinary build needs to
# replay the fuzz corpus; the fuzzing itself (tools/dev.sh fuzz) also needs the compiler.
FUZZ_PACKAGES=(clang-14)
# tools/bench/peers.py and peers_latency.py measure Spool beside these peers (the latter with
# Redis's Python client); the test command installs them for their smoke test (peers_test).
# The scripts start servers of their own in temporary directories.
PEER_PACKAGES=(redis-server postgresql-15 python3-redis)
# The tests of the HTTP surface: Prometheus's own parser for /metrics, YAML for the alert rules,
# and the dashboard in a real browser (Debian's Chromium, driven by playwright-core from npm,
# pinned in tests/dashboard/package-lock.json; never a downloaded browser).
HTTP_TEST_PACKAGES=(python3-prometheus-client python3-yaml chromium)

# Node and npm for the browser test. Debian's nodejs and npm packages on a fresh machine; where
# another Node (with its own npm) is installed already, that one is used.
node_setup() {
  if command -v node >/dev/null && command -v npm >/dev/null; then return 0; fi
  setup nodejs npm
}

setup() {
  local missing=()
  for p in "${PACKAGES[@]}" "$@"; do
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

# The ASan+UBSan build (build-asan/): -O1 -g1 builds in half the time of -O2 -g and keeps
# readable stacks. With target names, only those.
sanitize_build() {
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=None "-DCMAKE_CXX_FLAGS=-O1 -g1" \
    -DSPOOL_SANITIZE=address,undefined >/dev/null
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build build-asan -j "$(nproc)" "${targets[@]}"
  # A small quarantine: the default holds 256 MiB of freed memory, which memory-bound tests
  # (exhaustion_test) would read as growth.
  export ASAN_OPTIONS=detect_leaks=1:quarantine_size_mb=8
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp"
}

# Each libFuzzer target for $1 seconds, all at once, on copies of their corpora (build-fuzz/).
# -max_total_time does not end an input that hangs; -timeout=30 makes one a finding in 30 s.
fuzz_all() {
  local seconds="$1"
  CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DSPOOL_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-fuzz -j "$(nproc)"
  rm -rf build-fuzz/found && mkdir -p build-fuzz/found
  local pids=()
  for target in receipt validate engine http; do
    local work="build-fuzz/corpus-$target"
    rm -rf "$work" && cp -r "tests/fuzz/corpus/$target" "$work"
    echo "dev.sh: fuzzing $target for ${seconds}s"
    build-fuzz/bin/${target}_fuzz -max_total_time="$seconds" -timeout=30 -artifact_prefix=build-fuzz/found/ \
      -print_final_stats=1 "$work" > "build-fuzz/$target.log" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  for target in receipt validate engine http; do
    echo "dev.sh: $target: $(grep -E '^stat::number_of_executed_units' "build-fuzz/$target.log")"
    grep -E "==.*ERROR|^SUMMARY" "build-fuzz/$target.log" || true
  done
  if [ "$failed" -ne 0 ] || ls build-fuzz/found/* >/dev/null 2>&1; then
    echo "dev.sh: the fuzzers found crashes: build-fuzz/found/ (logs: build-fuzz/*.log)" >&2
    exit 1
  fi
}

case "${1:-}" in
  setup) setup ;;
  build) setup; build ;;
  run)
    shift
    setup; build
    echo "dev.sh: the dashboard: http://127.0.0.1:7421/ (metrics at /metrics)" >&2
    exec build/bin/spoold --data-dir "${SPOOL_DATA_DIR:-spool-data}" \
      --http-listen "${SPOOL_HTTP_LISTEN:-127.0.0.1:7421}" "$@"
    ;;
  test)
    shift
    setup "${FUZZ_PACKAGES[@]}" "${PEER_PACKAGES[@]}" "${HTTP_TEST_PACKAGES[@]}"; node_setup
    build
    ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
    echo "dev.sh: the unit, storage and integration tests under ASan and UBSan"
    sanitize_build engine_unit_test engine_test server_test spoolctl_unit_test \
      torture_checker_test
    ctest --test-dir build-asan --output-on-failure -j "$(nproc)" -L "unit|storage|integration" \
      -E "simulation"
    echo "dev.sh: fuzzing, 40 s per target"
    fuzz_all 40
    ;;
  sanitize)
    shift
    setup
    sanitize_build
    exec ctest --test-dir build-asan --output-on-failure -j "$(nproc)" -E "bench|fuzz" "$@"
    ;;
  fuzz)
    setup "${FUZZ_PACKAGES[@]}"
    fuzz_all "${2:-60}"
    ;;
  torture)
    cycles="${2:-500}"
    setup; build
    exec build/bin/spool-torture --cycles "$cycles" --storage-fault-share 0.1 --max-seconds 7200
    ;;
  peers)
    shift
    setup "${PEER_PACKAGES[@]}"; build
    exec tools/bench/peers.py "$@"
    ;;
  *)
    echo "usage: tools/dev.sh run [spoold flags] | test [ctest flags] | sanitize | fuzz [SECONDS] | torture [CYCLES] | peers [flags] | setup | build" >&2
    exit 2
    ;;
esac
