#!/usr/bin/env bash
# The C load generators and the PostgreSQL client tools the comparison
# benchmark drives (npm run bench): h2load (nghttp2-client), wrk, pgbench.
# The benchmark runs without them too, leaving those drivers out with the
# reason. Debian or Ubuntu, as root.
set -euo pipefail
missing=()
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v wrk >/dev/null || missing+=(wrk)
command -v pgbench >/dev/null || missing+=(postgresql-client)
if [ ${#missing[@]} -eq 0 ]; then
  echo "h2load, wrk and pgbench are installed"
  exit 0
fi
apt-get update
apt-get install -y "${missing[@]}"
