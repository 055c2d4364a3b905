package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// testCA issues the certificates of a TLS test: clients trust its own
// certificate (caFile), the node serves leaves it signs.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	pool   *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "roughy e2e CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, caFile: filepath.Join(t.TempDir(), "ca.pem"), pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	if err := os.WriteFile(ca.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// leaf returns a PEM certificate for 127.0.0.1 with serial, and its PEM key.
func (ca *testCA) leaf(t *testing.T, serial int64) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
}

// writeLeaf writes a new leaf with serial over certFile and keyFile, the
// way a renewal does: each file replaced whole by a rename.
func (ca *testCA) writeLeaf(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	c, k := ca.leaf(t, serial)
	for _, f := range []struct {
		path string
		data []byte
	}{{keyFile, k}, {certFile, c}} {
		tmp := f.path + ".new"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// servedSerial is the serial of the certificate a new connection to s gets.
func servedSerial(t *testing.T, s *server, ca *testCA) int64 {
	t.Helper()
	u, _ := url.Parse(s.URL)
	c, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: ca.pool})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", u.Host, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// waitSerial polls new connections for up to 20 s until they get serial.
func waitSerial(t *testing.T, s *server, ca *testCA, serial int64) {
	t.Helper()
	var got int64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = servedSerial(t, s, ca); got == serial {
			return
		}
	}
	t.Fatalf("new connections still get serial %d, want %d", got, serial)
}

// startTLSServer starts a node serving HTTPS with a leaf of ca (serial 1)
// written to certFile/keyFile (given through the environment twins), and
// points the suite's client at it.
func startTLSServer(t *testing.T, ca *testCA, opts ...serverOpt) (s *server, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.writeLeaf(t, certFile, keyFile, 1)
	tc := &tls.Config{RootCAs: ca.pool}
	opts = append(opts, withEnv("ROUGHY_TLS_CERT="+certFile, "ROUGHY_TLS_KEY="+keyFile), func(s *server) { s.tls = tc })
	s = startServer(t, opts...)
	old := client
	client = &http.Client{Timeout: httpTimeout, Transport: &http.Transport{TLSClientConfig: tc}}
	t.Cleanup(func() { client = old })
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("server URL %s, want https", s.URL)
	}
	return s, certFile, keyFile
}

// TestTLS: with --tls-cert/--tls-key the node serves HTTPS itself, to
// tus-js-client under Node and to curl trusting only the test CA; TLS 1.1
// and plain HTTP are refused.
func TestTLS(t *testing.T) {
	requireNodeModules(t)
	ca := newTestCA(t)
	s, _, _ := startTLSServer(t, ca)
	u, _ := url.Parse(s.URL)

	t.Run("tus-js-client", func(t *testing.T) {
		data := randomBytes(11<<20 + 777)
		f := runTusJS(t, s, "plain", writeTemp(t, "source.bin", data), "NODE_EXTRA_CA_CERTS="+ca.caFile)
		a := wantReady(t, s, acmeKey, f.AssetID, data)
		if !strings.HasPrefix(a.DownloadURL, "https://") {
			t.Errorf("download_url %q, want https", a.DownloadURL)
		}
	})

	t.Run("curl", func(t *testing.T) {
		data := randomBytes(3<<20 + 5)
		src := writeTemp(t, "curl.bin", data)
		bodyFile := filepath.Join(t.TempDir(), "post.json")
		out := runCmd(t, time.Minute, nil, "curl", "-sS", "--fail-with-body", "--cacert", ca.caFile, "-D", "-", "-o", bodyFile,
			"-X", "POST", "-H", "Authorization: Bearer "+acmeKey, "-H", "Tus-Resumable: 1.0.0",
			"-H", fmt.Sprintf("Upload-Length: %d", len(data)), "-H", "Upload-Metadata: "+videoMeta("curl.mp4"), s.Endpoint())
		loc := ""
		for line := range strings.SplitSeq(out, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Location") {
				loc = strings.TrimSpace(v)
			}
		}
		if !strings.HasPrefix(loc, s.Endpoint()+"/") {
			t.Fatalf("curl POST: Location %q, want under %s; headers:\n%s", loc, s.Endpoint(), out)
		}
		var body struct {
			Asset struct {
				ID string `json:"id"`
			} `json:"asset"`
		}
		if b, err := os.ReadFile(bodyFile); err != nil || json.Unmarshal(b, &body) != nil || body.Asset.ID == "" {
			t.Fatalf("curl POST body %q: %v", b, err)
		}
		code := runCmd(t, time.Minute, nil, "curl", "-sS", "--fail-with-body", "--cacert", ca.caFile, "-o", "/dev/null", "-w", "%{http_code}",
			"-X", "PATCH", "-H", "Authorization: Bearer "+acmeKey, "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
			"-H", "Content-Type: application/offset+octet-stream", "--data-binary", "@"+src, loc)
		if code != "204" {
			t.Fatalf("curl PATCH: %s, want 204", code)
		}
		a := wantReady(t, s, acmeKey, body.Asset.ID, data)
		dst := filepath.Join(t.TempDir(), "curl-download.bin")
		runCmd(t, time.Minute, nil, "curl", "-sS", "--fail-with-body", "--cacert", ca.caFile, "-o", dst, a.DownloadURL)
		got, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if err := testsvc.SameBytes(got, data); err != nil {
			t.Fatalf("curl download: %v", err)
		}
		// Without the CA, curl refuses the self-signed chain.
		cmd := exec.Command("curl", "-sS", "-o", "/dev/null", s.URL+"/healthz")
		cmd.Env = cleanEnv()
		if err := cmd.Run(); err == nil {
			t.Errorf("curl without --cacert trusted the test certificate")
		}
	})

	t.Run("old-versions-refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			c.Close()
			t.Fatalf("a TLS 1.1 handshake succeeded (version %x)", c.ConnectionState().Version)
		}
		t.Logf("TLS 1.1: %v", err)
		c, err = tls.Dial("tcp", u.Host, &tls.Config{RootCAs: ca.pool, MaxVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("TLS 1.2: %v", err)
		}
		c.Close()
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + u.Host + "/healthz")
		if err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			t.Errorf("plain HTTP on the TLS port answered 200")
		}
	})
}

// TestTLSCertificateReload: a certificate replaced on disk is served to
// new connections without a restart (the files are checked on a timer,
// and at once on SIGHUP), while a PATCH streaming over a connection made
// with the old certificate finishes; the upload then resumes (HEAD and
// PATCH) on a new connection that sees the new certificate.
func TestTLSCertificateReload(t *testing.T) {
	ca := newTestCA(t)
	s, certFile, keyFile := startTLSServer(t, ca)
	if got := servedSerial(t, s, ca); got != 1 {
		t.Fatalf("served serial %d, want 1", got)
	}
	const part = 2 << 20
	data := randomBytes(3 * part)
	up := createUpload(t, s, acmeKey, int64(len(data)))
	if rep := patch(t, up.Location, acmeKey, 0, data[:part]); rep.Status != http.StatusNoContent {
		t.Fatalf("first PATCH: %d %s", rep.Status, rep.Body)
	}

	// A PATCH in flight across the reload: half its body now, the rest
	// once new connections get the new certificate.
	pr, pw := io.Pipe()
	result := make(chan error, 1)
	go func() {
		rep, err := tryDo(t.Context(), req{Method: "PATCH", URL: up.Location, Key: acmeKey, Body: pr, Header: map[string]string{
			"Upload-Offset": fmt.Sprint(part), "Content-Type": "application/offset+octet-stream", "Content-Length": fmt.Sprint(part),
		}})
		if err == nil && rep.Status != http.StatusNoContent {
			err = fmt.Errorf("got %d %s, want 204", rep.Status, rep.Body)
		}
		result <- err
	}()
	if _, err := pw.Write(data[part : part+part/2]); err != nil {
		t.Fatal(err)
	}
	ca.writeLeaf(t, certFile, keyFile, 2)
	waitSerial(t, s, ca, 2)
	if _, err := pw.Write(data[part+part/2 : 2*part]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-result; err != nil {
		t.Fatalf("PATCH in flight across the reload: %v", err)
	}

	// Resume on a new connection: it sees serial 2.
	fresh := &http.Client{Timeout: httpTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool}}}
	send := func(method string, body []byte, h map[string]string) *http.Response {
		t.Helper()
		hr, err := http.NewRequestWithContext(t.Context(), method, up.Location, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Authorization", "Bearer "+acmeKey)
		hr.Header.Set("Tus-Resumable", "1.0.0")
		for k, v := range h {
			hr.Header.Set(k, v)
		}
		resp, err := fresh.Do(hr)
		if err != nil {
			t.Fatalf("%s after the reload: %v", method, err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s after the reload: body: %v", method, err)
		}
		if got := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); got != 2 {
			t.Errorf("%s after the reload: connection has serial %d, want 2", method, got)
		}
		return resp
	}
	if resp := send("HEAD", nil, nil); resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != fmt.Sprint(2*part) {
		t.Fatalf("HEAD after the reload: %d, Upload-Offset %q, want 200 and %d", resp.StatusCode, resp.Header.Get("Upload-Offset"), 2*part)
	}
	if resp := send("PATCH", data[2*part:], map[string]string{"Upload-Offset": fmt.Sprint(2 * part), "Content-Type": "application/offset+octet-stream"}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH after the reload: %d, want 204", resp.StatusCode)
	}
	wantReady(t, s, acmeKey, up.AssetID, data)

	// SIGHUP reloads at once, even files whose size and times are those
	// of the previous ones (which the timer takes for unchanged).
	stamp := func(p string) os.FileInfo {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	oldCert, oldKey := stamp(certFile), stamp(keyFile)
	for i := 0; ; i++ {
		ca.writeLeaf(t, certFile, keyFile, 3)
		if stamp(certFile).Size() == oldCert.Size() && stamp(keyFile).Size() == oldKey.Size() {
			break
		}
		if i == 100 {
			t.Fatal("no leaf of the previous size in 100 tries")
		}
	}
	for _, f := range []struct {
		path string
		fi   os.FileInfo
	}{{certFile, oldCert}, {keyFile, oldKey}} {
		if err := os.Chtimes(f.path, f.fi.ModTime(), f.fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, s, ca, 3)
	if rep := do(t, req{Method: "GET", URL: s.URL + "/healthz", NoTus: true}); rep.Status != http.StatusOK {
		t.Fatalf("/healthz after SIGHUP: %d", rep.Status)
	}
}

// TestTLSConnCapRefusal: the per-IP connection cap still holds over TLS,
// and its refusal reaches the client as the JSON 503 to retry on (over
// TLS), not as a broken handshake.
func TestTLSConnCapRefusal(t *testing.T) {
	ca := newTestCA(t)
	s, _, _ := startTLSServer(t, ca, withArgs("--max-conns-per-ip", "1"))
	u, _ := url.Parse(s.URL)
	// Start waited for /healthz over a connection of its own, now closed;
	// wait until the server freed its slot.
	var held *tls.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: ca.pool})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == http.StatusOK {
			held = c
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no connection admitted: %v", err)
		}
	}
	defer held.Close()
	rep := do(t, req{Method: "GET", URL: s.URL + "/healthz", NoTus: true})
	var body struct {
		Error struct{ Code string } `json:"error"`
	}
	if rep.Status != http.StatusServiceUnavailable || json.Unmarshal(rep.Body, &body) != nil || body.Error.Code != "too_many_connections_from_client" || rep.Header.Get("Retry-After") == "" {
		t.Fatalf("second connection over TLS: %d %s (Retry-After %q), want the JSON 503 too_many_connections_from_client", rep.Status, rep.Body, rep.Header.Get("Retry-After"))
	}
}
