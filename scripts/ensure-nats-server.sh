#!/usr/bin/env bash
# The cluster tests (test/cluster, test/cli/cluster.test.ts) start real
# nats-server processes: install Debian's package where it is missing.
set -euo pipefail
if command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; then exit 0; fi
sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then sudo=sudo; fi
echo "nats-server not found: installing Debian's package (apt-get)" >&2
$sudo apt-get update && $sudo apt-get install -y nats-server
