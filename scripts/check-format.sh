#!/usr/bin/env bash
# Fails when a tracked C++ file differs from .clang-format (clang-format 14, Debian 12's).
#
#   scripts/check-format.sh         list the files that differ, exit 1 if any
#   scripts/check-format.sh --fix   reformat them in place
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command -v clang-format >/dev/null || "$root/scripts/setup-debian.sh"

mapfile -t files < <(git ls-files '*.hpp' '*.cpp' '*.h')
if [[ "${1:-}" == --fix ]]; then
    clang-format -i "${files[@]}"
    exit 0
fi

differing=()
for f in "${files[@]}"; do
    clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || differing+=("$f")
done
if ((${#differing[@]} > 0)); then
    echo "check-format: ${#differing[@]} of ${#files[@]} files differ from .clang-format" \
        "($(clang-format --version)); run scripts/check-format.sh --fix:" >&2
    printf '  %s\n' "${differing[@]}" >&2
    exit 1
fi
echo "check-format: all ${#files[@]} C++ files match .clang-format"
