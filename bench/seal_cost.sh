#!/bin/sh
# CPU and size of sealing a 64-member gossip digest (gossip/src/transport/envelope.rs)
# against zstd at other levels, measured in the same run (docs/benchmarks.md).
# Usage: bench/seal_cost.sh     Needs: cargo. Starts no process beyond itself.
set -eu
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p probemesh-gossip --example seal_cost
