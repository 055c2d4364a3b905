// Package s3e2e holds end-to-end tests of `roughy serve --storage s3`: the
// real binary, built once per run, against a real versitygw (posix backend
// on loopback) and, for one test, a real redis-server. Every check goes
// through HTTP as a client would, and the stored objects are read back
// directly from versitygw with aws-sdk-go-v2 (issue 3, items 4–5).
package s3e2e
