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
source "$here/../secrets.sh"
find_conclave

# The CA (its key never enters a container) in DIR/ca; what the containers mount in
# DIR/agents: one certificate per container, naming its service, and the CLI's own (mutual
# TLS: every caller presents one).
init_secrets "$dir"
for name in voter-1 voter-2 voter-3 client-1 client-2 cli; do
  issue_cert "$dir" "$name" --dns "$name"
done
chmod 700 "$dir/ca" "$dir/agents"
chmod 600 "$dir"/ca/* "$dir"/agents/*
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$dir/agents"
else
  echo "note: the agents run as uid 10001; make $dir/agents readable to it (sudo chown -R 10001:10001 $dir/agents)" >&2
fi
echo "$dir"
