package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
)

// Failure classes, as a delivery record's last_error shows them. A record
// is read by the account that owns the webhook; a raw error would tell it
// the addresses its URL resolved to, the server's resolver and what the
// server's network answered: a map of the network for whoever registers
// URLs. The log keeps the details.
const (
	ClassBlocked  = "blocked_address"    // the URL or an address it resolved to is refused (Targets)
	ClassRefused  = "connection_refused" // nothing listens there
	ClassReset    = "connection_closed"  // the receiver closed the connection before answering
	ClassTimeout  = "timeout"            // no answer within the timeout
	ClassDNS      = "dns"                // the name did not resolve
	ClassTLS      = "tls"                // handshake or certificate failed
	ClassStatus   = "http_status"        // an answer but no 2xx (last_status has it)
	ClassNetwork  = "network"            // any other network failure
	ClassDeleted  = "webhook_deleted"    // the webhook went before its delivery
	classInternal = "internal"           // the event could not be encoded
)

// StatusError is an answer that is not 2xx.
type StatusError struct{ Status int }

func (e *StatusError) Error() string { return "receiver answered " + strconv.Itoa(e.Status) }

// Class names the class of a delivery's failure (err from post).
func Class(status int, err error) string {
	if err == nil {
		return ""
	}
	switch {
	case IsBlocked(err):
		return ClassBlocked
	case status != 0:
		return ClassStatus
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return ClassTimeout
	case is[*net.DNSError](err):
		return ClassDNS
	case is[*tls.CertificateVerificationError](err), is[tls.RecordHeaderError](err), is[tls.AlertError](err),
		is[x509.UnknownAuthorityError](err), is[x509.HostnameError](err), is[x509.CertificateInvalidError](err):
		return ClassTLS
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ClassReset
	case is[*net.OpError](err):
		return ClassNetwork
	}
	return classInternal
}

func is[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

func isTimeout(err error) bool {
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}
