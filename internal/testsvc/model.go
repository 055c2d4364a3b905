package testsvc

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// UploadModel runs random upload sequences against a running roughy and
// checks each finished upload by downloading it: the asset's sha256 is
// computed from the bytes as they passed the proxy and proves nothing
// about what storage holds, so the model compares the download with its
// source byte for byte.
//
// A sequence picks a protocol (TUS 1.0.0 or the IETF draft at interop 8),
// a known or deferred length, chunk sizes around the storage's edges (1
// byte, a page, an S3 part of 5 MiB and its neighbours, 11 and 16 MiB),
// creation with or without data, a body cut off mid-way and resumed from
// HEAD, and a last request that carries no body but ends the upload (TUS
// Upload-Length on an empty PATCH, the draft's empty Upload-Complete: ?1
// append).
type UploadModel struct {
	Base string // http://127.0.0.1:PORT
	Key  string // API key (Bearer)
	// MaxSize bounds an upload's bytes (default 24 MiB).
	MaxSize int
}

const (
	modelTusPath    = "/api/v1/assets/upload-resumable"
	modelAssetsPath = "/api/v1/assets/"
)

// modelChunks are the chunk sizes sequences draw from.
var modelChunks = []int{1, 7, 4095, 4096, 4097, 1 << 20, 5<<20 - 1, 5 << 20, 5<<20 + 1, 11 << 20, 16 << 20}

// modelPlan is one random sequence, logged so that a failure names it.
type modelPlan struct {
	ietf     bool
	deferred bool
	chunks   []int
	inCreate bool // the first chunk goes with the creation
	cut      int  // index of the chunk whose body is cut mid-way, -1: none
	// emptyLast ends the upload with a request without a body: the
	// length (TUS) or completion (draft) comes on its own.
	emptyLast bool
}

func (p modelPlan) String() string {
	proto := "tus"
	if p.ietf {
		proto = "ietf"
	}
	return fmt.Sprintf("%s deferred=%v chunks=%v in-create=%v cut=%d empty-last=%v",
		proto, p.deferred, p.chunks, p.inCreate, p.cut, p.emptyLast)
}

func (m UploadModel) plan(r *rand.Rand) modelPlan {
	maxSize := m.MaxSize
	if maxSize <= 0 {
		maxSize = 24 << 20
	}
	p := modelPlan{ietf: r.IntN(3) == 0, deferred: r.IntN(2) == 0, cut: -1}
	total := 0
	for n := 1 + r.IntN(4); len(p.chunks) < n; {
		c := modelChunks[r.IntN(len(modelChunks))]
		if total+c > maxSize {
			break
		}
		p.chunks = append(p.chunks, c)
		total += c
	}
	if len(p.chunks) == 0 {
		p.chunks = []int{1 + r.IntN(4096)}
	}
	p.inCreate = r.IntN(4) == 0
	// An empty last request is what a client sends when it learns the
	// length only at the end (or ends a draft upload): the case that
	// stored uploads short. Give it every other sequence of those that
	// can have it.
	p.emptyLast = p.deferred && r.IntN(2) == 0
	if r.IntN(3) == 0 {
		p.cut = r.IntN(len(p.chunks))
	}
	return p
}

// Run runs one sequence from seed and fails t unless the upload ends ready
// with the source's size and sha256 and its download is the source.
func (m UploadModel) Run(t testing.TB, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	p := m.plan(r)
	total := 0
	for _, c := range p.chunks {
		total += c
	}
	data := make([]byte, total)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 7}).Read(data)
	run := &modelRun{m: m, t: t, p: p, data: data}
	if err := run.upload(); err != nil {
		t.Fatalf("model seed %d (%s): %v", seed, p, err)
	}
	if err := run.verify(); err != nil {
		t.Fatalf("model seed %d (%s): %v", seed, p, err)
	}
}

type modelRun struct {
	m    UploadModel
	t    testing.TB
	p    modelPlan
	data []byte
	loc  string
}

func (run *modelRun) auth() Hdr {
	h := Hdr{{"Authorization", "Bearer " + run.m.Key}}
	if run.p.ietf {
		return append(h, [2]string{"Upload-Draft-Interop-Version", "8"})
	}
	return append(h, [2]string{"Tus-Resumable", "1.0.0"})
}

func (run *modelRun) upload() error {
	p, data := run.p, run.data
	offset, first := 0, 0
	if err := run.create(); err != nil {
		return err
	}
	if p.inCreate {
		// Creation with upload: the offset comes back with the 201.
		first = 1
		offset = p.chunks[0]
	}
	for i := first; i < len(p.chunks); i++ {
		end := offset + p.chunks[i]
		last := i == len(p.chunks)-1 && !p.emptyLast
		if i == p.cut {
			if err := run.cutAppend(offset, data[offset:end], last); err != nil {
				return err
			}
		}
		var err error
		if offset, err = run.appendUntil(offset, end, last); err != nil {
			return err
		}
	}
	if p.emptyLast {
		if _, err := run.appendUntil(len(data), len(data), true); err != nil {
			return err
		}
	}
	return nil
}

// create POSTs the upload, with the first chunk when the plan says so.
func (run *modelRun) create() error {
	p, data := run.p, run.data
	h := run.auth()
	var body []byte
	if p.inCreate {
		body = data[:p.chunks[0]]
	}
	complete := p.inCreate && len(p.chunks) == 1 && !p.emptyLast
	if p.ietf {
		h = append(h, [2]string{"Upload-Complete", sf(complete)}, [2]string{"Content-Type", "video/mp4"})
		if !p.deferred {
			h = append(h, [2]string{"Upload-Length", strconv.Itoa(len(data))})
		}
		if body == nil {
			body = []byte{}
		}
	} else {
		h = run.tusCreateHdr(h, body != nil, complete)
	}
	resp, err := modelSend(http.MethodPost, run.m.Base+modelTusPath, h, body)
	if err != nil {
		return fmt.Errorf("POST: %w", err)
	}
	if resp.Status != http.StatusCreated {
		return fmt.Errorf("POST: %d %s", resp.Status, resp.Body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return fmt.Errorf("POST: Location %q: %v", resp.Header.Get("Location"), err)
	}
	base, _ := url.Parse(run.m.Base + modelTusPath)
	run.loc = base.ResolveReference(loc).String()
	if p.inCreate {
		if got := resp.Header.Get("Upload-Offset"); got != strconv.Itoa(len(body)) {
			return fmt.Errorf("POST with %d bytes: Upload-Offset %q", len(body), got)
		}
	}
	return nil
}

// tusCreateHdr adds to h the TUS creation headers: metadata, the length
// (deferred unless complete), and the body's type when withBody.
func (run *modelRun) tusCreateHdr(h Hdr, withBody, complete bool) Hdr {
	h = append(h, [2]string{"Upload-Metadata", "type " + b64("video") + ",content_type " + b64("video/mp4")})
	if run.p.deferred {
		h = append(h, [2]string{"Upload-Defer-Length", "1"})
		if complete {
			h = append(h, [2]string{"Upload-Length", strconv.Itoa(len(run.data))})
		}
	} else {
		h = append(h, [2]string{"Upload-Length", strconv.Itoa(len(run.data))})
	}
	if withBody {
		h = append(h, [2]string{"Content-Type", "application/offset+octet-stream"})
	}
	return h
}

// appendHdr is the header of an append at offset; last says it ends the
// upload.
func (run *modelRun) appendHdr(offset int, last bool) Hdr {
	h := append(run.auth(), [2]string{"Upload-Offset", strconv.Itoa(offset)})
	if run.p.ietf {
		return append(h, [2]string{"Upload-Complete", sf(last)}, [2]string{"Content-Type", "application/partial-upload"})
	}
	h = append(h, [2]string{"Content-Type", "application/offset+octet-stream"})
	if last && run.p.deferred {
		h = append(h, [2]string{"Upload-Length", strconv.Itoa(len(run.data))})
	}
	return h
}

// appendUntil appends data[from:to] and resumes as a client does (HEAD,
// or the offset a 409 names) until the server holds to bytes; a 503 (the
// server asks to retry) is retried after a pause.
func (run *modelRun) appendUntil(from, to int, last bool) (int, error) {
	offset := from
	for try := 0; ; try++ {
		if try == 20 {
			return offset, fmt.Errorf("append [%d, %d): no progress after %d tries", from, to, try)
		}
		resp, err := modelSend(http.MethodPatch, run.loc, run.appendHdr(offset, last), run.data[offset:to])
		if err != nil {
			// The server may answer (a 409 after a takeover) and close
			// before the body is written: the connection resets, the
			// client resumes from HEAD, as a real client does.
			resp.Status = http.StatusServiceUnavailable
		}
		switch resp.Status {
		case http.StatusNoContent, http.StatusOK, http.StatusCreated:
			got, err := strconv.Atoi(resp.Header.Get("Upload-Offset"))
			if err != nil || got != to {
				return offset, fmt.Errorf("append [%d, %d): %d with Upload-Offset %q", offset, to, resp.Status, resp.Header.Get("Upload-Offset"))
			}
			return to, nil
		case http.StatusConflict:
			got, err := strconv.Atoi(resp.Header.Get("Upload-Offset"))
			if err != nil {
				got, err = run.head()
			}
			if err != nil || got < from || got > to {
				return offset, fmt.Errorf("append at %d: 409 %s, server offset %d (%v), want in [%d, %d]", offset, resp.Body, got, err, from, to)
			}
			offset = got
		case http.StatusServiceUnavailable, http.StatusLocked:
			time.Sleep(200 * time.Millisecond)
			got, err := run.head()
			if err != nil {
				return offset, err
			}
			offset = got
		default:
			return offset, fmt.Errorf("append [%d, %d): %d %s", offset, to, resp.Status, resp.Body)
		}
	}
}

// cutAppend sends an append of chunk at offset whose connection closes
// after about half the body, as a client that lost its network.
func (run *modelRun) cutAppend(offset int, chunk []byte, last bool) error {
	c := DialDraft(run.t, run.loc)
	h := append(run.appendHdr(offset, last), [2]string{"Content-Length", strconv.Itoa(len(chunk))})
	c.Start(http.MethodPatch, run.loc, h)
	c.Body(chunk[:len(chunk)/2])
	return c.Conn.Close()
}

// head returns the offset HEAD reports.
func (run *modelRun) head() (int, error) {
	resp, err := modelSend(http.MethodHead, run.loc, run.auth(), nil)
	if err != nil {
		return 0, fmt.Errorf("HEAD: %w", err)
	}
	if resp.Status != http.StatusOK && resp.Status != http.StatusNoContent {
		return 0, fmt.Errorf("HEAD: %d", resp.Status)
	}
	return strconv.Atoi(resp.Header.Get("Upload-Offset"))
}

// verify checks the asset and downloads its bytes.
func (run *modelRun) verify() error {
	id := run.loc[strings.LastIndexByte(run.loc, '/')+1:]
	req, _ := http.NewRequest(http.MethodGet, run.m.Base+modelAssetsPath+id, nil)
	req.Header.Set("Authorization", "Bearer "+run.m.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var a struct {
		State       string `json:"state"`
		SizeBytes   *int64 `json:"size_bytes"`
		SHA256      string `json:"sha256"`
		DownloadURL string `json:"download_url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET asset %s: %d: %v", id, resp.StatusCode, err)
	}
	sum := sha256.Sum256(run.data)
	if a.State != "ready" || a.SizeBytes == nil || *a.SizeBytes != int64(len(run.data)) || a.SHA256 != hex.EncodeToString(sum[:]) {
		return fmt.Errorf("asset %s: state %q size %v sha256 %s, want ready, %d bytes, %x", id, a.State, a.SizeBytes, a.SHA256, len(run.data), sum)
	}
	dl, err := url.Parse(a.DownloadURL)
	if err != nil {
		return err
	}
	base, _ := url.Parse(run.m.Base)
	got, err := httpGetAll(base.ResolveReference(dl).String())
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if !bytes.Equal(got, run.data) {
		i := 0
		for i < len(got) && i < len(run.data) && got[i] == run.data[i] {
			i++
		}
		return fmt.Errorf("download holds %d bytes, want %d; first difference at byte %d", len(got), len(run.data), i)
	}
	return nil
}

func httpGetAll(u string) ([]byte, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET: %d %.200s", resp.StatusCode, b)
	}
	return b, err
}

func sf(b bool) string {
	if b {
		return "?1"
	}
	return "?0"
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// modelSend sends one request on a connection of its own and reads its
// final answer (1xx skipped). Unlike DraftRoundTrip it returns transport
// errors: a server that answers and closes before the body is written
// resets the connection, which a resuming client must survive.
func modelSend(method, target string, h Hdr, body []byte) (DraftReply, error) {
	u, err := url.Parse(target)
	if err != nil {
		return DraftReply{}, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return DraftReply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, u.RequestURI(), u.Host)
	for _, kv := range h {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[0], kv[1])
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	_, werr := io.WriteString(conn, b.String())
	if werr == nil && len(body) > 0 {
		_, werr = conn.Write(body)
	}
	br := bufio.NewReader(conn)
	for {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return DraftReply{}, errors.Join(werr, err)
		}
		rb, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return DraftReply{}, err
		}
		if resp.StatusCode >= 200 {
			return DraftReply{Status: resp.StatusCode, Header: resp.Header, Body: rb}, nil
		}
	}
}
