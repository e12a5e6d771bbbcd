# Sourced by the nightly scripts: the binary, and GitHub's output files when run elsewhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
KO_MATRIX="${KO_MATRIX:-target/release/ko-matrix}"
# A downloaded artifact loses its executable bit.
[ -f "$KO_MATRIX" ] && [ ! -x "$KO_MATRIX" ] && chmod +x "$KO_MATRIX"
if [ ! -x "$KO_MATRIX" ]; then
  echo "no ko-matrix binary at $KO_MATRIX: run \`cargo build --release\` or set KO_MATRIX" >&2
  exit 2
fi
: "${GITHUB_OUTPUT:=/dev/null}"
: "${GITHUB_STEP_SUMMARY:=/dev/null}"
