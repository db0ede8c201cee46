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
source "$here/../secrets.sh"
find_conclave

init_secrets "$dir"
issue_cert "$dir" agent \
  --dns "*.conclave.$ns.svc.cluster.local" --dns "*.conclave.$ns.svc" \
  --dns "conclave-api.$ns.svc.cluster.local" --dns "conclave-api.$ns.svc" --dns conclave-api
issue_cert "$dir" cli
echo "$dir"
