package browsere2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/roughy/ingest/internal/testsvc"
)

// cdp drives one headless Chromium through the DevTools protocol over
// --remote-debugging-pipe (fd 3: commands in, fd 4: answers and events
// out, each message JSON ended by a NUL byte): no WebSocket, no library.
// It is attached to one page target.
type cdp struct {
	t       *testing.T
	w       io.Writer
	mu      sync.Mutex
	next    int
	pending map[int]chan cdpAnswer
	session string
	log     *testsvc.LogBuffer
}

type cdpAnswer struct {
	ID     int             `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startCDP launches Chromium on about:blank and attaches to its page.
func startCDP(t *testing.T) *cdp {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &cdp{t: t, w: inW, pending: map[int]chan cdpAnswer{}, log: &testsvc.LogBuffer{}}
	cmd := exec.Command(chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--remote-debugging-pipe", "--window-size=1000,1100",
		"--user-data-dir="+t.TempDir(), "about:blank")
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.ExtraFiles = []*os.File{inR, outW} // fd 3, fd 4
	startProcess(t, cmd, 5*time.Second)
	inR.Close()
	outW.Close()
	t.Cleanup(func() { inW.Close() })
	go c.read(outR)

	var targets struct {
		TargetInfos []struct {
			TargetID string `json:"targetId"`
			Type     string `json:"type"`
		} `json:"targetInfos"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c.call("", "Target.getTargets", nil, &targets)
		for _, ti := range targets.TargetInfos {
			if ti.Type == "page" {
				var att struct {
					SessionID string `json:"sessionId"`
				}
				c.call("", "Target.attachToTarget", map[string]any{"targetId": ti.TargetID, "flatten": true}, &att)
				c.session = att.SessionID
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium shows no page target; log:\n%s", withoutDBus(c.log.Tail(4000)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// read dispatches answers to their callers; events are dropped.
func (c *cdp) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			c.mu.Lock()
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.pending = nil
			c.mu.Unlock()
			return
		}
		var a cdpAnswer
		if json.Unmarshal(msg[:len(msg)-1], &a) != nil || a.ID == 0 {
			continue
		}
		c.mu.Lock()
		ch := c.pending[a.ID]
		delete(c.pending, a.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
}

// call sends one command (on the attached page unless session is "") and
// decodes its result into out; any failure fails the test.
func (c *cdp) call(session, method string, params, out any) {
	c.t.Helper()
	if session == "page" {
		session = c.session
	}
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		c.t.Fatalf("cdp %s: chromium is gone; log:\n%s", method, withoutDBus(c.log.Tail(4000)))
	}
	c.next++
	id := c.next
	ch := make(chan cdpAnswer, 1)
	c.pending[id] = ch
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b, _ := json.Marshal(msg)
	_, err := c.w.Write(append(b, 0))
	c.mu.Unlock()
	if err != nil {
		c.t.Fatalf("cdp %s: %v", method, err)
	}
	select {
	case a, ok := <-ch:
		if !ok {
			c.t.Fatalf("cdp %s: chromium closed the pipe; log:\n%s", method, withoutDBus(c.log.Tail(4000)))
		}
		if a.Error != nil {
			c.t.Fatalf("cdp %s: %s", method, a.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(a.Result, out); err != nil {
				c.t.Fatalf("cdp %s result %s: %v", method, a.Result, err)
			}
		}
	case <-time.After(pageTimeout):
		c.t.Fatalf("cdp %s: no answer in %v", method, pageTimeout)
	}
}

// eval runs expr in the page (awaiting a promise) and decodes its value.
func (c *cdp) eval(expr string, out any) {
	c.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	c.call("page", "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &res)
	if e := res.ExceptionDetails; e != nil {
		desc := e.Text
		if e.Exception != nil {
			desc = e.Exception.Description
		}
		c.t.Fatalf("page: %s: %s", expr, desc)
	}
	if out != nil && len(res.Result.Value) > 0 {
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			c.t.Fatalf("page value %s: %v", res.Result.Value, err)
		}
	}
}

// waitFor polls the boolean expr in the page until it is true.
func (c *cdp) waitFor(what, expr string, limit time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), limit)
	defer cancel()
	for {
		var ok bool
		c.eval("Boolean("+expr+")", &ok)
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			var state string
			c.eval(`document.body.dataset.state + ": " + document.getElementById("message").textContent + " | " + document.getElementById("stats").textContent`, &state)
			c.t.Fatalf("page: %s not reached in %v (page: %s)", what, limit, state)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// setFile puts path into the page's <input type=file> matching selector,
// as if the person chose it (the page's change handler runs).
func (c *cdp) setFile(selector, path string) {
	c.t.Helper()
	var doc struct {
		Root struct {
			NodeID int `json:"nodeId"`
		} `json:"root"`
	}
	c.call("page", "DOM.getDocument", map[string]any{"depth": 0}, &doc)
	var q struct {
		NodeID int `json:"nodeId"`
	}
	c.call("page", "DOM.querySelector", map[string]any{"nodeId": doc.Root.NodeID, "selector": selector}, &q)
	if q.NodeID == 0 {
		c.t.Fatalf("page has no %s", selector)
	}
	c.call("page", "DOM.setFileInputFiles", map[string]any{"nodeId": q.NodeID, "files": []string{path}}, nil)
}

// screenshot saves a PNG of the page and returns its path: under the
// test's artifact dir with `go test -artifacts`, else in the system temp
// dir (kept either way).
func (c *cdp) screenshot(name string) string {
	c.t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	c.call("page", "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		c.t.Fatalf("screenshot: %v", err)
	}
	dir := os.TempDir()
	if f := flagValue("test.artifacts"); f == "true" {
		dir = c.t.ArtifactDir()
	}
	path := fmt.Sprintf("%s/%s-%s.png", dir, name, time.Now().Format("20060102-150405"))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		c.t.Fatalf("screenshot: %v", err)
	}
	return path
}
