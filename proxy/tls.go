package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Certificates is the node's TLS certificate, read from a PEM certificate
// (chain) file and a PEM key file and read again when either changes, so
// a renewed certificate is served without a restart. New handshakes get
// the current certificate; connections already open keep theirs, so
// uploads in flight are not dropped.
type Certificates struct {
	certFile, keyFile string
	log               *slog.Logger

	cur atomic.Pointer[tls.Certificate]

	mu     sync.Mutex // serializes reloads
	loaded fileStamp  // of the files cur was read from
	failed fileStamp  // of the last files that did not load (logged once)
}

// fileStamp tells whether the files changed since they were read.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// LoadCertificates reads certFile and keyFile; an error means the pair
// is unusable (missing, unreadable, or the key does not match).
func LoadCertificates(certFile, keyFile string, log *slog.Logger) (*Certificates, error) {
	if log == nil {
		log = slog.Default()
	}
	c := &Certificates{certFile: certFile, keyFile: keyFile, log: log}
	st, err := c.stamp()
	if err != nil {
		return nil, err
	}
	if err := c.load(st); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certificates) stamp() (fileStamp, error) {
	ci, err := os.Stat(c.certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("proxy: tls certificate: %w", err)
	}
	ki, err := os.Stat(c.keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("proxy: tls key: %w", err)
	}
	return fileStamp{ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()}, nil
}

func (c *Certificates) load(st fileStamp) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("proxy: tls certificate %s, key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&cert)
	c.loaded = st
	return nil
}

// Reload reads the files again if they changed since the last successful
// read (force: whatever their stamps say). A pair that does not load
// (e.g. the certificate is written and the key not yet) leaves the
// current certificate in place; the next check tries again.
func (c *Certificates) Reload(force bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.stamp()
	if err == nil && !force && st == c.loaded {
		return nil
	}
	if err == nil {
		err = c.load(st)
	}
	if err != nil {
		if st != c.failed || force {
			c.log.Warn("proxy: tls certificate not reloaded, serving the previous one", "err", err)
		}
		c.failed = st
		return err
	}
	c.failed = fileStamp{}
	leaf := c.cur.Load().Leaf
	c.log.Info("proxy: tls certificate reloaded", "cert", c.certFile, "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	return nil
}

// GetCertificate is tls.Config's: the current certificate.
func (c *Certificates) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cur.Load(), nil
}

// serverConfig is the listener's TLS: 1.2 and later (1.0 and 1.1 are
// broken and deprecated, RFC 8996), HTTP/1.1 only (fasthttp has no
// HTTP/2), the current certificate per handshake.
func (c *Certificates) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: c.GetCertificate,
	}
}
