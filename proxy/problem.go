package proxy

import (
	"encoding/json"

	"github.com/valyala/fasthttp"
)

// problem is an RFC 9457 problem details body, the draft's error answer.
// It carries the catalogue's code and message (as detail), like the TUS
// endpoint's JSON errors. Errors the draft registers no type for are
// "about:blank" with the status's phrase as title (RFC 9457 4.2.1).
type problem struct {
	Type           string `json:"type"`
	Title          string `json:"title"`
	Status         int    `json:"status"`
	Detail         string `json:"detail,omitempty"`
	Code           string `json:"code,omitempty"`
	RequestID      string `json:"request_id,omitempty"`
	ExpectedOffset *int64 `json:"expected-offset,omitempty"`
	ProvidedOffset *int64 `json:"provided-offset,omitempty"`
}

// newProblem is e as an about:blank problem.
func newProblem(e *Error) problem {
	return problem{Type: "about:blank", Title: fasthttp.StatusMessage(e.Status), Status: e.Status,
		Detail: e.Message, Code: e.Code}
}

// registered gives p the problem type the catalogue registers for e's
// code, with its title (the draft's types need members only the caller
// knows, so it decides when the type applies).
func (p *problem) registered(e *Error) {
	c := catalogue[e.code]
	p.Type, p.Title = c.ProblemType, c.ProblemTitle
}

// writeProblem sends p as the application/problem+json body with status.
func writeProblem(ctx *fasthttp.RequestCtx, status int, p *problem) {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // a plain struct of our own
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/problem+json")
	if ctx.IsHead() {
		ctx.Response.ResetBody()
		ctx.Response.Header.SetContentLength(len(b))
		return
	}
	ctx.SetBody(b)
}
