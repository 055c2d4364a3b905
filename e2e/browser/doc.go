// Package browsere2e proves that a real browser uploads through Roughy's TUS
// endpoint: tus-js-client 4.3.1 (its browser bundle) runs in Debian's
// headless Chromium against `roughy serve` on loopback, from a page served by
// another loopback origin, so CORS preflight and exposed headers matter.
//
// Needs /usr/bin/chromium and e2e/browser/node_modules; scripts/setup-browser.sh
// installs both.
package browsere2e
