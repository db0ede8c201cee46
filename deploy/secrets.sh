# Sourced by deploy/compose/generate.sh and deploy/kubernetes/generate.sh: the conclave
# binary to make secrets with, a CA in DIR/ca (its key stays there) and what the agents
# mount in DIR/agents (the CA certificate, certificates, the cluster and management tokens).
# Nothing that exists is replaced.

# Set `bin`: CONCLAVE_BIN, else `conclave` on PATH, else this checkout's release/debug build.
find_conclave() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin=${CONCLAVE_BIN:-}
  if [ -z "$bin" ]; then
    for b in "$(command -v conclave || true)" "$root/target/release/conclave" "$root/target/debug/conclave"; do
      if [ -n "$b" ] && [ -x "$b" ]; then bin=$b; break; fi
    done
  fi
  [ -n "$bin" ] || { echo "no conclave binary: build one (cargo build --release) or set CONCLAVE_BIN" >&2; exit 1; }
}

# DIR/ca with the CA, DIR/agents with its certificate and the two tokens (owner-only).
init_secrets() { # dir
  umask 077
  mkdir -p "$1/ca" "$1/agents"
  [ -f "$1/ca/ca.pem" ] || "$bin" tls ca create --dir "$1/ca" >/dev/null
  cp "$1/ca/ca.pem" "$1/agents/ca.pem"
  local t
  for t in cluster-token management-token; do
    [ -f "$1/agents/$t" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$1/agents/$t"
  done
}

# DIR/agents/NAME.pem and NAME-key.pem, signed by the CA, unless they exist.
issue_cert() { # dir name [tls cert create flags...]
  local dir=$1 name=$2
  shift 2
  if [ ! -f "$dir/agents/$name.pem" ]; then
    "$bin" tls cert create --dir "$dir/ca" --name "$name" "$@" >/dev/null
    mv "$dir/ca/$name.pem" "$dir/ca/$name-key.pem" "$dir/agents/"
  fi
}
