#!/usr/bin/env bash
# One command to a healthy TLS cluster on this Docker engine: builds the image when it is
# missing (deploy/build-image.sh), makes the secrets when they are missing (generate.sh),
# starts the Compose project and waits until every container is healthy, then prints how to
# reach it. Run as root (or a docker-group user who can chown the secrets).
#
#   deploy/compose/up.sh            # then: deploy/compose/up.sh down   (removes everything)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export CONCLAVE_IMAGE=${CONCLAVE_IMAGE:-conclave:latest}
export CONCLAVE_SECRETS=${CONCLAVE_SECRETS:-$here/secrets}
export CONCLAVE_HTTP_PORT=${CONCLAVE_HTTP_PORT:-7400}
project=${CONCLAVE_PROJECT:-conclave}
compose() { docker-compose -p "$project" -f "$here/docker-compose.yml" "$@"; }

if [ "${1:-}" = down ]; then
  compose down -v --remove-orphans
  exit 0
fi
docker image inspect "$CONCLAVE_IMAGE" >/dev/null 2>&1 || "$root/deploy/build-image.sh" "$CONCLAVE_IMAGE"
bin=${CONCLAVE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/conclave}
[ -x "$bin" ] || (cd "$root" && cargo build --release -q -p conclave)
CONCLAVE_BIN=$bin "$here/generate.sh" "$CONCLAVE_SECRETS" >/dev/null
compose up -d
echo "waiting for the five containers to be healthy..."
for _ in $(seq 1 120); do
  healthy=0
  for s in voter-1 voter-2 voter-3 client-1 client-2; do
    id=$(compose ps -q "$s")
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && healthy=$((healthy + 1))
  done
  if [ "$healthy" = 5 ]; then
    s=$CONCLAVE_SECRETS/agents
    cat <<MSG
healthy: 3 voters, 2 clients. From this host (as root, or the owner of $s):
  export CONCLAVE_ADDR=https://127.0.0.1:$CONCLAVE_HTTP_PORT CONCLAVE_MTLS_CA_FILE=$s/ca.pem \\
         CONCLAVE_MTLS_CERT_FILE=$s/cli.pem CONCLAVE_MTLS_KEY_FILE=$s/cli-key.pem \\
         CONCLAVE_TOKEN=\$(cat $s/management-token)
  $bin status
Remove it all with: $0 down
MSG
    exit 0
  fi
  sleep 1
done
compose ps
echo "not healthy within 120 s; see: docker-compose -p $project -f $here/docker-compose.yml logs" >&2
exit 1
