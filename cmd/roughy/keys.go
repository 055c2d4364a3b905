package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/roughy/ingest/apikey"
	"github.com/roughy/ingest/sessionstore"
)

const keysUsage = "keys create --account NAME | keys list | keys revoke ID"

// keys manages API keys in the store selected by --sessions, --data-dir
// and --redis-url (the same flags as serve). With the embedded store and
// a server running on the data dir, it goes through the server's admin
// socket (see admin.go).
func (c cli) keys(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: roughy %s", errUsage, keysUsage)
	}
	sub, args := args[0], args[1:]
	fl := newFlagSet("keys "+sub, keysUsage+" [flags]", c.stderr)
	sf := addStoreFlags(fl)
	var account *string
	if sub == "create" {
		account = fl.String("account", "", "account the key belongs to (required)")
	}
	pos, err := parseArgs(fl, args, c.lookup)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}

	var run func(keyStore) error
	switch sub {
	case "create":
		if *account == "" || len(pos) > 0 {
			return fmt.Errorf("%w: roughy keys create --account NAME", errUsage)
		}
		run = func(st keyStore) error {
			secret, rec := apikey.New(*account)
			if err := st.CreateKey(ctx, rec); err != nil {
				return fmt.Errorf("roughy: create key: %w", err)
			}
			fmt.Fprintf(c.stderr, "key %s for account %q; the secret is shown only this once:\n", rec.ID, rec.Account)
			fmt.Fprintln(c.stdout, secret)
			return nil
		}
	case "list":
		if len(pos) > 0 {
			return fmt.Errorf("%w: roughy keys list", errUsage)
		}
		run = func(st keyStore) error { return c.listKeys(ctx, st) }
	case "revoke":
		if len(pos) != 1 {
			return fmt.Errorf("%w: roughy keys revoke ID", errUsage)
		}
		run = func(st keyStore) error {
			err := st.RevokeKey(ctx, pos[0])
			if errors.Is(err, sessionstore.ErrNotFound) {
				return fmt.Errorf("roughy: no key %s", pos[0])
			}
			if err != nil {
				return fmt.Errorf("roughy: revoke key: %w", err)
			}
			fmt.Fprintf(c.stdout, "revoked %s\n", pos[0])
			return nil
		}
	default:
		return fmt.Errorf("%w: unknown keys command %q: roughy %s", errUsage, sub, keysUsage)
	}

	return withAdminStore(ctx, sf, func(st adminStore) error { return run(st) })
}

// listKeys prints st's keys as a table on stdout.
func (c cli) listKeys(ctx context.Context, st keyStore) error {
	keys, err := st.Keys(ctx)
	if err != nil {
		return fmt.Errorf("roughy: list keys: %w", err)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACCOUNT\tPREFIX\tCREATED\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%t\n", k.ID, k.Account, k.Prefix,
			k.CreatedAt.UTC().Format(time.RFC3339), k.Revoked)
	}
	return tw.Flush()
}
