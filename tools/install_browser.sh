#!/usr/bin/env bash
# Make sure headless Chromium and a Chinese (CJK) font are installed for the site's browser test
# (tests/test_site.py, driven by Playwright with this Chromium: Playwright downloads no browser).
# `make test` runs this; `make install` and `make lab` do not (learners never need Chromium).
#
# - Chromium already there (COURSE_CHROMIUM, or chromium, chromium-browser, google-chrome on PATH)
#   and a font with Chinese glyphs (fc-list :lang=zh): nothing to do.
# - MARKS="not browser" (make test MARKS="not browser"): nothing to do (the tests marked `browser`
#   are then deselected, by explicit choice).
# - root with apt-get (CI, containers): installs what is missing of Debian's `chromium` and
#   `fonts-wqy-microhei` (WenQuanYi Micro Hei: 1.6 MB download, 5 MB on disk, the smallest
#   Debian font that covers the glossary's characters; fonts-noto-cjk is 91 MB).
# - otherwise: says how to install it and fails, so `make test` cannot pass without the test.
set -euo pipefail

if [[ "${MARKS:-}" == *"not browser"* ]]; then
    echo "install_browser: MARKS=\"$MARKS\", not checking for Chromium (the browser tests are deselected)."
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

has_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && [[ -n "$(fc-list :lang=zh family 2>/dev/null)" ]]
}

if found && has_cjk_font; then
    exit 0
fi

if [[ -n "${COURSE_CHROMIUM:-}" ]] && ! found; then
    echo "install_browser: COURSE_CHROMIUM=$COURSE_CHROMIUM is not an executable file." >&2
    exit 1
fi

if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    packages=()
    found || packages+=(chromium)
    has_cjk_font || packages+=(fonts-wqy-microhei fontconfig)
    echo "install_browser: installing Debian's ${packages[*]} (apt-get; chromium is about 350 MB on disk)..."
    start=$(date +%s)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    echo "install_browser: ${packages[*]} installed in $(( $(date +%s) - start )) s."
    exit 0
fi

cat >&2 <<'MSG'
install_browser: Chromium and a font with Chinese glyphs are needed by the course site's
browser test (tests/test_site.py); one of them was not found. Install them, e.g.
    sudo apt-get install --no-install-recommends chromium fonts-wqy-microhei      (Debian/Ubuntu)
or point COURSE_CHROMIUM at a Chromium/Chrome executable:
    make test COURSE_CHROMIUM=/path/to/chrome
or leave out the browser tests explicitly (CI must not):
    make test MARKS="not browser"
MSG
exit 1
