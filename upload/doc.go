// Package upload is the upload domain behind the protocol front doors:
// who may write an upload when (leases and takeover), and what offset
// retrieval answers. It speaks in sessions, leases and domain errors; it
// imports nothing HTTP, so the TUS and IETF draft dialects in proxy both
// call it, and its tests need no server.
//
// Leases is the lease-and-takeover type: the newest request on an upload
// wins. See docs/design/takeover.md.
package upload
