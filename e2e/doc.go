// Package e2e holds end-to-end tests of the real roughy binary on the
// embedded default: TestMain builds ./cmd/roughy once, every test starts
// its own `roughy serve` on a free loopback port and a temporary data dir,
// and talks to it with raw HTTP, the seed guide's cURL script, and
// tus-js-client under Node (e2e/js). The fleet (Redis) and S3 suites live
// in the subpackages e2e/fleet and e2e/s3.
package e2e
