// Package webui holds the browser test of the Temporal Web UI: headless
// Chromium (Debian's chromium package, driven by playwright-core from npm,
// pinned in package.json and package-lock.json) opens the dev server's UI,
// filters the workflows by NodeName for a power change the test started,
// and checks the change is listed with its summary. Screenshots are kept
// in webui/artifacts. `make deps` installs chromium and runs `npm ci` here.
package webui
