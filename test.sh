#!/usr/bin/env bash
# The test command of README.md: installs what the playground's browser test
# needs when it is missing (Debian's chromium; the npm packages of
# internal/playground/web, exactly as package-lock.json pins them), then
# runs the suite on PostgreSQL and then on SQLite. Arguments go to both
# go test runs (e.g. bash test.sh -run TestPlayground).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromium >/dev/null; then
  sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  echo "test.sh: installing Debian's chromium for the playground's browser test" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "test.sh: Node.js 20 or later and npm are needed for the playground's browser test; install them first" >&2
  exit 1
fi
web=internal/playground/web
# npm ci only when the lock file changed since the last install.
if ! cmp -s "$web/package-lock.json" "$web/node_modules/.installed-package-lock.json"; then
  npm ci --prefix "$web" --no-audit --no-fund
  cp "$web/package-lock.json" "$web/node_modules/.installed-package-lock.json"
fi

go test -race -count=1 "$@" ./... && TEST_BACKEND=sqlite go test -race -count=1 "$@" ./...
