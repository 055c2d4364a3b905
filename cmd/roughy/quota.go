package main

import (
	"github.com/roughy/ingest/internal/bytesize"

	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"

	"github.com/roughy/ingest/sessionstore"
)

const quotaUsage = "quota set --account NAME [--bytes-stored SIZE] [--uploads N] [--bytes-reserved SIZE] | quota clear --account NAME | quota show --account NAME"

// quotaStore is the part of the session store the quota commands use.
type quotaStore interface {
	SetQuota(ctx context.Context, account string, l sessionstore.QuotaLimits) error
	Quota(ctx context.Context, account string) (sessionstore.QuotaLimits, sessionstore.QuotaUsage, error)
}

// adminStore is what the admin socket serves: keys and quotas.
type adminStore interface {
	keyStore
	quotaStore
}

// quotaLimit is a limit flag: a size (or count), where 0 is a limit of
// zero (sessionstore.QuotaZero: an operator freezing an account gets
// exactly that), "unlimited" (stored as 0) or "default" (the server's
// --quota-… flag). set reports whether it was given, so that `quota set`
// changes only the limits it names.
type quotaLimit struct {
	v     int64
	set   bool
	count bool // a number of uploads, not a size
}

func (q *quotaLimit) String() string {
	switch {
	case q == nil || !q.set:
		return ""
	case q.v == sessionstore.QuotaZero:
		return "0"
	case q.v < 0:
		return "default"
	case q.v == 0:
		return "unlimited"
	}
	return strconv.FormatInt(q.v, 10)
}

// Set implements flag.Value.
func (q *quotaLimit) Set(s string) error {
	switch s {
	case "default":
		q.v = sessionstore.QuotaDefault
	case "unlimited":
		q.v = 0
	default:
		var n int64
		var err error
		if q.count {
			err = (*count)(&n).Set(s)
		} else {
			n, err = bytesize.Parse(s)
		}
		if err != nil {
			return fmt.Errorf("want a number, unlimited or default: %w", err)
		}
		if n == 0 {
			n = sessionstore.QuotaZero
		}
		q.v = n
	}
	q.set = true
	return nil
}

// quota shows and sets per-account quotas in the store selected by the
// store flags; with the embedded store and a server running on the data
// dir, through its admin socket (like keys).
func (c cli) quota(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: roughy %s", errUsage, quotaUsage)
	}
	sub, args := args[0], args[1:]
	fl := newFlagSet("quota "+sub, quotaUsage+" [flags]", c.stderr)
	sf := addStoreFlags(fl)
	account := fl.String("account", "", "account (required)")
	stored, uploads, reserved := &quotaLimit{}, &quotaLimit{count: true}, &quotaLimit{}
	if sub == "set" {
		fl.Var(stored, "bytes-stored", "bytes of completed uploads plus those reserved (SIZE, unlimited or default)")
		fl.Var(uploads, "uploads", "uploads in progress (N, unlimited or default)")
		fl.Var(reserved, "bytes-reserved", "bytes the uploads in progress may grow to (SIZE, unlimited or default)")
	}
	pos, err := parseArgs(fl, args, c.lookup)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *account == "" || len(pos) > 0 || (sub != "set" && sub != "show" && sub != "clear") {
		return fmt.Errorf("%w: roughy %s", errUsage, quotaUsage)
	}
	run := func(st quotaStore) error {
		l, u, err := st.Quota(ctx, *account)
		if err != nil {
			return fmt.Errorf("roughy: read quota: %w", err)
		}
		if sub == "clear" {
			// The account's own limits go: the server's defaults apply.
			l = sessionstore.QuotaLimits{BytesStored: sessionstore.QuotaDefault, Uploads: sessionstore.QuotaDefault, BytesReserved: sessionstore.QuotaDefault}
			if err := st.SetQuota(ctx, *account, l); err != nil {
				return fmt.Errorf("roughy: clear quota: %w", err)
			}
		}
		if sub == "set" {
			setLimit(&l.BytesStored, stored)
			setLimit(&l.Uploads, uploads)
			setLimit(&l.BytesReserved, reserved)
			if err := st.SetQuota(ctx, *account, l); err != nil {
				return fmt.Errorf("roughy: set quota: %w", err)
			}
		}
		return printQuota(c.stdout, *account, l, u)
	}
	return withAdminStore(ctx, sf, func(st adminStore) error { return run(st) })
}

// withAdminStore runs fn on the store the flags select: with the embedded
// store and a server running on the data dir, through its admin socket
// (the server holds the store), else the store itself.
func withAdminStore(ctx context.Context, sf *storeFlags, fn func(adminStore) error) error {
	if sf.embedded() {
		if a := dialAdmin(ctx, *sf.dataDir); a != nil {
			return fn(a)
		}
	}
	st, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(st)
}

// setLimit sets *dst to q's value when q was given.
func setLimit(dst *int64, q *quotaLimit) {
	if q.set {
		*dst = q.v
	}
}

func printQuota(w io.Writer, account string, l sessionstore.QuotaLimits, u sessionstore.QuotaUsage) error {
	show := func(v int64) string {
		return (&quotaLimit{v: v, set: true}).String()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ACCOUNT %s\tUSED\tLIMIT\n", account)
	fmt.Fprintf(tw, "bytes_stored\t%d\t%s\n", u.BytesStored, show(l.BytesStored))
	fmt.Fprintf(tw, "uploads\t%d\t%s\n", u.Uploads, show(l.Uploads))
	fmt.Fprintf(tw, "bytes_reserved\t%d\t%s\n", u.BytesReserved, show(l.BytesReserved))
	return tw.Flush()
}

// adminQuota is the admin socket's quota record.
type adminQuota struct {
	Limits sessionstore.QuotaLimits `json:"limits"`
	Usage  sessionstore.QuotaUsage  `json:"usage"`
}

// addQuotaAdmin serves the quota commands on the admin socket.
func addQuotaAdmin(mux *http.ServeMux, st quotaStore) {
	mux.HandleFunc("GET /v1/quota/{account}", func(w http.ResponseWriter, r *http.Request) {
		l, u, err := st.Quota(r.Context(), r.PathValue("account"))
		if err != nil {
			adminError(w, err)
			return
		}
		writeJSON(w, adminQuota{Limits: l, Usage: u})
	})
	mux.HandleFunc("PUT /v1/quota/{account}", func(w http.ResponseWriter, r *http.Request) {
		var l sessionstore.QuotaLimits
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&l); err != nil {
			http.Error(w, "a limits record", http.StatusBadRequest)
			return
		}
		if err := st.SetQuota(r.Context(), r.PathValue("account"), l); err != nil {
			adminError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

func (a *adminClient) Quota(ctx context.Context, account string) (sessionstore.QuotaLimits, sessionstore.QuotaUsage, error) {
	var q adminQuota
	err := a.do(ctx, http.MethodGet, "/v1/quota/"+url.PathEscape(account), nil, &q)
	return q.Limits, q.Usage, err
}

func (a *adminClient) SetQuota(ctx context.Context, account string, l sessionstore.QuotaLimits) error {
	return a.do(ctx, http.MethodPut, "/v1/quota/"+url.PathEscape(account), l, nil)
}

// addQuotaDefaultFlags binds serve's default quotas, for accounts without
// limits of their own, to l.
func addQuotaDefaultFlags(fs *flag.FlagSet, l *sessionstore.QuotaLimits) {
	sizeVar(fs, &l.BytesStored, "quota-bytes-stored",
		"default per-account quota: bytes of completed uploads plus those reserved (0: unlimited; roughy quota set overrides it per account)")
	fs.Var((*count)(&l.Uploads), "quota-uploads", "default per-account quota: uploads in progress (0: unlimited)")
	sizeVar(fs, &l.BytesReserved, "quota-bytes-reserved",
		"default per-account quota: bytes the uploads in progress may grow to (0: unlimited)")
}

// count is a non-negative integer flag.
type count int64

func (c *count) String() string { return strconv.FormatInt(int64(*c), 10) }

// Set implements flag.Value.
func (c *count) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a non-negative integer, not %q", s)
	}
	*c = count(n)
	return nil
}
