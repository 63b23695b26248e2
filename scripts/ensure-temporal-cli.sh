#!/bin/sh
# Prints the path of a working Temporal CLI, building one with Go when none is found.
#
# Usage: scripts/ensure-temporal-cli.sh [CACHE_DIR]
#
# Looks, in this order, at TEMPORAL_CLI_PATH, `temporal` on PATH, CACHE_DIR/temporal, and otherwise
# builds the pinned release into CACHE_DIR with `go install`. CACHE_DIR defaults to
# $HOME/.cache/lifecycle/bin. Only the path goes to standard output; progress and errors go to standard
# error. Exits 1 when no CLI can be found or built. scripts/temporal-cli.ts follows the same order for
# TypeScript callers; keep the version below equal to TEMPORAL_CLI_VERSION there.
set -eu

TEMPORAL_CLI_VERSION=v1.5.1
TEMPORAL_CLI_MODULE=github.com/temporalio/cli/cmd/temporal

cache_dir=${1:-${HOME:?HOME is not set; pass the cache folder as the first argument}/.cache/lifecycle/bin}

works() {
  [ -f "$1" ] && [ -x "$1" ] && "$1" --version >/dev/null 2>&1
}

if [ -n "${TEMPORAL_CLI_PATH:-}" ]; then
  if works "$TEMPORAL_CLI_PATH"; then
    printf '%s\n' "$TEMPORAL_CLI_PATH"
    exit 0
  fi
  echo "TEMPORAL_CLI_PATH is set to \"$TEMPORAL_CLI_PATH\", which is not a working Temporal CLI." >&2
  exit 1
fi

on_path=$(command -v temporal 2>/dev/null || true)
if [ -n "$on_path" ] && works "$on_path"; then
  printf '%s\n' "$on_path"
  exit 0
fi

if works "$cache_dir/temporal"; then
  printf '%s\n' "$cache_dir/temporal"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "No Temporal CLI found (TEMPORAL_CLI_PATH, PATH, $cache_dir) and Go is not installed to build one." >&2
  echo "Install the CLI from https://docs.temporal.io/cli or install Go, then run this again." >&2
  exit 1
fi

mkdir -p "$cache_dir"
cache_dir=$(cd "$cache_dir" && pwd)
echo "Building the Temporal CLI $TEMPORAL_CLI_VERSION with Go into $cache_dir; the first build takes a few minutes." >&2
if ! GOBIN="$cache_dir" go install "$TEMPORAL_CLI_MODULE@$TEMPORAL_CLI_VERSION" >&2; then
  echo "Building the Temporal CLI failed; see the Go output above." >&2
  exit 1
fi

if works "$cache_dir/temporal"; then
  printf '%s\n' "$cache_dir/temporal"
  exit 0
fi
echo "The build finished but $cache_dir/temporal does not run." >&2
exit 1
