// Package upload is the upload domain behind the protocol front doors:
// who may write an upload when (leases and takeover), appends under the
// lease, completion, and what offset retrieval answers. It speaks in
// sessions, leases and domain errors (ErrOffsetMismatch, ErrTakenOver,
// ErrPastLength, ...); it imports nothing HTTP, so the TUS and IETF
// draft dialects in proxy both call it, and its tests need no server.
//
// Leases is the lease-and-takeover type: the newest request on an
// upload wins (docs/design/takeover.md). Service is the domain of one
// node over the session store and the pipeline: a handler parses its
// request into one Service call (Append reads an io.Reader body that a
// release request can cut) and renders the result.
package upload
