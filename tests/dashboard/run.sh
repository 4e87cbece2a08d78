#!/bin/sh
# The dashboard's real-browser test: installs playwright-core (pinned, from package-lock.json;
# no browser is downloaded) and runs dashboard_test.js against build/bin/spoold with Debian's
# /usr/bin/chromium. SPOOL_BIN_DIR and SPOOL_TEST_ARTIFACTS move the binaries and screenshots.
set -eu
cd "$(dirname "$0")"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent
exec node --test dashboard_test.js
