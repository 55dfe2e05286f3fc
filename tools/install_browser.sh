#!/usr/bin/env bash
# Make sure headless Chromium is installed for the site's browser test (tests/test_site.py).
# `make test` runs this; `make install` and `make lab` do not (learners never need Chromium).
#
# - Chromium already there (COURSE_CHROMIUM, or chromium, chromium-browser, google-chrome on PATH): nothing to do.
# - COURSE_SKIP_BROWSER=1: nothing to do (the browser test is then skipped, by explicit choice).
# - root with apt-get (CI, containers): installs Debian's `chromium` package.
# - otherwise: says how to install it and fails, so `make test` cannot pass without the test.
set -euo pipefail

if [[ "${COURSE_SKIP_BROWSER:-0}" == "1" ]]; then
    echo "install_browser: COURSE_SKIP_BROWSER=1, not checking for Chromium (the browser test will be skipped)."
    exit 0
fi

found() {
    if [[ -n "${COURSE_CHROMIUM:-}" ]]; then
        [[ -x "$COURSE_CHROMIUM" ]]
    else
        local name
        for name in chromium chromium-browser google-chrome google-chrome-stable; do
            command -v "$name" >/dev/null 2>&1 && return 0
        done
        return 1
    fi
}

if found; then
    exit 0
fi

if [[ -n "${COURSE_CHROMIUM:-}" ]]; then
    echo "install_browser: COURSE_CHROMIUM=$COURSE_CHROMIUM is not an executable file." >&2
    exit 1
fi

if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: Chromium not found; installing Debian's chromium package (apt-get; about 350 MB on disk)..."
    start=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
    echo "install_browser: $(chromium --version 2>/dev/null || echo chromium) installed in $(( $(date +%s) - start )) s."
    exit 0
fi

cat >&2 <<'MSG'
install_browser: Chromium is needed by the course site's browser test (tests/test_site.py)
and was not found. Install it, e.g.
    sudo apt-get install --no-install-recommends chromium      (Debian/Ubuntu)
or point COURSE_CHROMIUM at a Chromium/Chrome executable:
    make test COURSE_CHROMIUM=/path/to/chrome
or skip the browser test explicitly (CI must not):
    COURSE_SKIP_BROWSER=1 make test
MSG
exit 1
