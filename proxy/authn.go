package proxy

import (
	"context"

	"github.com/roughy/ingest/sessionstore"
	"github.com/valyala/fasthttp"
)

// Authenticators. A route's auth names how its requests say who they act
// for; signing in yields a principal: the account, and the policy of the
// credential, which limits the request beyond what the account may do.
// The handlers see the principal only, never the credential.

// authKind is a route's authenticator.
type authKind uint8

const (
	authNone authKind = iota
	// authKey is an API key, Authorization: Bearer <key> (keyAuth).
	authKey
	// authGrant is a direct upload URL's ?token=, for the grant of the
	// path's {id} (grantAuth). It signs in with the grant's policy.
	authGrant
)

// first reports whether the credential is checked before CORS, OPTIONS
// and the method check, because its policy decides them (a grant's
// origins and methods). An API key is checked after them: a preflight or
// a 405 needs no key.
func (k authKind) first() bool { return k == authGrant }

// principal is who a request acts for.
type principal struct {
	account string
	// policy limits what the request may do; nil: all its account may
	// (an API key).
	policy *policy
}

// claim is the grant that a creation by the principal claims, its id the
// upload's (nil: the creation makes an upload of its own).
func (pr *principal) claim() *sessionstore.DirectUpload {
	if pr == nil || pr.policy == nil {
		return nil
	}
	return &pr.policy.grant
}

// admit applies the principal's policy to the request, after the route's
// own checks.
func (pr *principal) admit(rc *fasthttp.RequestCtx, rq *request) error {
	if pr == nil || pr.policy == nil {
		return nil
	}
	return pr.policy.admit(rc, rq)
}

// cors adds the CORS headers of the principal's policy and reports
// whether it has one; without, the server's apply.
func (pr *principal) cors(rc *fasthttp.RequestCtx) bool {
	if pr == nil || pr.policy == nil {
		return false
	}
	pr.policy.cors(rc)
	return true
}

// authenticators are the server's, one per authKind.
type authenticators struct {
	key   *keyAuth
	grant *grantAuth
}

// signIn runs the authenticator kind on the request.
func (a authenticators) signIn(ctx context.Context, rc *fasthttp.RequestCtx, kind authKind, p *params) (*principal, error) {
	if kind == authGrant {
		return a.grant.signIn(ctx, rc, p.id)
	}
	return a.key.signIn(ctx, rc)
}

// signedIn makes the request act for pr, unless signing in failed.
func (rq *request) signedIn(pr *principal, err error) error {
	if err != nil {
		return err
	}
	rq.principal, rq.account = pr, pr.account
	return nil
}
