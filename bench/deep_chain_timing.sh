#!/usr/bin/env bash
# Wall time and peak memory of `batch --size 4` on the chain
# `let t{i} = sin(t{i-1}) * w + t{i-1}` at 1,000 to 20,000 steps (issue 21):
# five runs per depth of each binary given, in turn, so that binaries built
# from different commits are compared in the same minutes.
# Usage: bench/deep_chain_timing.sh [BINARY...]   (default: target/release/batchgraph)
set -euo pipefail
binaries=("$@")
[ ${#binaries[@]} -eq 0 ] && binaries=(target/release/batchgraph)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for n in 1000 5000 10000 20000; do
  {
    printf 'input x: [4]\nparam w: [4]\nlet t0 = x\n'
    for ((i = 1; i <= n; i++)); do printf 'let t%d = sin(t%d) * w + t%d\n' $i $((i - 1)) $((i - 1)); done
    printf 'out s = sum(t%d)\n' $n
  } > "$dir/chain$n.graph"
done
echo "steps binary: wall s / peak KB, five runs"
for n in 1000 5000 10000 20000; do
  for b in "${binaries[@]}"; do
    runs=""
    for i in 1 2 3 4 5; do
      runs+="$( { /usr/bin/time -f "%e/%M" "$b" batch "$dir/chain$n.graph" --size 4 >/dev/null; } 2>&1 | tail -1 ) "
    done
    echo "$n $b: $runs"
  done
done
