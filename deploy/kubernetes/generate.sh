#!/usr/bin/env bash
# Make the files the Kubernetes manifests run with, in DIR (default ./secrets next to this
# script), for the namespace NAMESPACE (default conclave): a CA in DIR/ca (its key stays
# here), and in DIR/agents (what kustomization.yaml's secretGenerator turns into the
# conclave-secrets Secret): one agent certificate naming every voter pod
# (*.conclave.NAMESPACE.svc.cluster.local) and the conclave-api Service, one for the CLI,
# the cluster token and the management token. Nothing is replaced when it exists.
#
#   deploy/kubernetes/generate.sh [DIR] [NAMESPACE]
#   kubectl apply -k deploy/kubernetes
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/secrets}
ns=${2:-conclave}
bin=${CONCLAVE_BIN:-}
if [ -z "$bin" ]; then
  for b in "$(command -v conclave || true)" "$here/../../target/release/conclave" "$here/../../target/debug/conclave"; do
    if [ -n "$b" ] && [ -x "$b" ]; then bin=$b; break; fi
  done
fi
[ -n "$bin" ] || { echo "no conclave binary: build one (cargo build --release) or set CONCLAVE_BIN" >&2; exit 1; }

umask 077
mkdir -p "$dir/ca" "$dir/agents"
[ -f "$dir/ca/ca.pem" ] || "$bin" tls ca create --dir "$dir/ca" >/dev/null
cp "$dir/ca/ca.pem" "$dir/agents/ca.pem"
if [ ! -f "$dir/agents/agent.pem" ]; then
  "$bin" tls cert create --dir "$dir/ca" --name agent \
    --dns "*.conclave.$ns.svc.cluster.local" --dns "*.conclave.$ns.svc" \
    --dns "conclave-api.$ns.svc.cluster.local" --dns "conclave-api.$ns.svc" --dns conclave-api >/dev/null
  mv "$dir/ca/agent.pem" "$dir/ca/agent-key.pem" "$dir/agents/"
fi
if [ ! -f "$dir/agents/cli.pem" ]; then
  "$bin" tls cert create --dir "$dir/ca" --name cli >/dev/null
  mv "$dir/ca/cli.pem" "$dir/ca/cli-key.pem" "$dir/agents/"
fi
token() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
[ -f "$dir/agents/cluster-token" ] || token >"$dir/agents/cluster-token"
[ -f "$dir/agents/management-token" ] || token >"$dir/agents/management-token"
echo "$dir"
