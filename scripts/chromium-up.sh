#!/usr/bin/env bash
# Install a headless Chromium for the report's rendering test (tests/search/test_report.py).
#
# Installs the distribution's chromium package when no Chromium is on PATH. Needs root and
# apt-get; without them, or on any failure, this prints one line saying why and exits 0,
# and the rendering test skips with that reason.
set -uo pipefail

say() { echo "chromium-up: $*"; }
give_up() { say "$* (the report's Chromium rendering test will skip)"; exit 0; }

for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null; then
        say "$name is installed"
        exit 0
    fi
done
[ "$(id -u)" = 0 ] || give_up "not root, so cannot install Chromium; install one (e.g. apt-get install chromium)"
command -v apt-get >/dev/null || give_up "no Chromium and no apt-get to install one"
say "installing the distribution's chromium package"
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } ||
    give_up "apt-get install chromium failed"
say "installed $(chromium --version 2>/dev/null || echo chromium)"
