#!/usr/bin/env bash
# Make the files the Compose cluster runs with, in DIR (default ./secrets next to this
# script): a CA (DIR/ca) and, in DIR/agents (what the containers mount), a certificate per
# container naming its service, one for the CLI, the cluster token (node RPC and gossip)
# and the management token (ACLs bootstrap with it). Nothing is
# replaced when DIR already holds it. Needs a `conclave` binary (CONCLAVE_BIN, or on PATH,
# or this checkout's release/debug build).
#
#   deploy/compose/generate.sh [DIR]
#
# The agents run as uid 10001 in the image: run this as root (the files are then given to
# 10001, mode 600), or make them readable to that user yourself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/secrets}
bin=${CONCLAVE_BIN:-}
if [ -z "$bin" ]; then
  for b in "$(command -v conclave || true)" "$here/../../target/release/conclave" "$here/../../target/debug/conclave"; do
    if [ -n "$b" ] && [ -x "$b" ]; then bin=$b; break; fi
  done
fi
[ -n "$bin" ] || { echo "no conclave binary: build one (cargo build --release) or set CONCLAVE_BIN" >&2; exit 1; }

# The CA (its key never enters a container) in DIR/ca; what the containers mount in
# DIR/agents.
mkdir -p "$dir/ca" "$dir/agents"
[ -f "$dir/ca/ca.pem" ] || "$bin" tls ca create --dir "$dir/ca" >/dev/null
cp "$dir/ca/ca.pem" "$dir/agents/ca.pem"
# One certificate per container, naming its service; and the CLI's own (mutual TLS: every
# caller presents one).
for name in voter-1 voter-2 voter-3 client-1 client-2 cli; do
  if [ ! -f "$dir/agents/$name.pem" ]; then
    "$bin" tls cert create --dir "$dir/ca" --name "$name" --dns "$name" >/dev/null
    mv "$dir/ca/$name.pem" "$dir/ca/$name-key.pem" "$dir/agents/"
  fi
done
token() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
umask 077
[ -f "$dir/agents/cluster-token" ] || token >"$dir/agents/cluster-token"
[ -f "$dir/agents/management-token" ] || token >"$dir/agents/management-token"
chmod 700 "$dir/ca" "$dir/agents"
chmod 600 "$dir"/ca/* "$dir"/agents/*
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$dir/agents"
else
  echo "note: the agents run as uid 10001; make $dir/agents readable to it (sudo chown -R 10001:10001 $dir/agents)" >&2
fi
echo "$dir"
