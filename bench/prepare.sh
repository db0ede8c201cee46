# Sourced by the comparison benchmarks: install Debian's etcd if missing, build the release
# binaries, and set BIN (the agent) and BENCH (the load generator).
if ! command -v etcd >/dev/null; then
  echo "installing etcd-server (Debian) for the comparison" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server) >/dev/null
fi
cargo build --release -q -p conclave -p conclave-bench
BIN=target/release/conclave
BENCH=target/release/conclave-bench

# Retry a command every 0.1 s until it succeeds, for up to WAIT_SECONDS (default 30).
wait_ok() { # command...
  local tries=$(( ${WAIT_SECONDS:-30} * 10 ))
  for _ in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "timed out waiting for: $*" >&2; return 1
}
