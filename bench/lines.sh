#!/usr/bin/env bash
# Source lines of metrics-app without tests, per file and in total: all lines, and code lines
# (neither blank nor a comment). A file's tests are its `#[cfg(test)]` module, which comes last,
# so each file is counted up to that line. Prints figures; asserts nothing.
#
#   bash bench/lines.sh            # the working tree
#   bash bench/lines.sh 8092d15^   # any commit (read with git archive, nothing checked out)
set -euo pipefail
cd "$(dirname "$0")/.."
src=crates/metrics-app/src
if [ $# -gt 0 ]; then
  tree=$(mktemp -d)
  trap 'rm -rf "$tree"' EXIT
  git archive "$1" "$src" | tar -x -C "$tree"
  src=$tree/$src
fi
find "$src" -name '*.rs' | sort | while read -r file; do
  awk -v name="${file#"$src"/}" '
    /^#\[cfg\(test\)\]/ { exit }
    { lines++ }
    !/^[ \t]*$/ && !/^[ \t]*\/\// { code++ }
    END { printf "%6d %6d  %s\n", lines, code, name }' "$file"
done | awk '{ print; lines += $1; code += $2 } END { printf "%6d %6d  total (lines, code lines)\n", lines, code }'
