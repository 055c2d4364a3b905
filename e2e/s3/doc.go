// Package s3e2e holds end-to-end tests of `roughy serve --storage s3`: the
// real binary, built once per run, against real S3 servers on loopback:
// each test runs once on versitygw (posix backend) and once on SeaweedFS
// (internal/testsvc's S3Backends); one test also uses a real
// redis-server. Every check goes through HTTP as a client would, and the
// stored objects are read back directly from the S3 server with
// aws-sdk-go-v2.
package s3e2e
