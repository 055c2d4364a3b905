package proxy

import (
	"errors"
	"testing"

	"github.com/roughy/ingest/sessionstore"
)

// TestRefuseAppend: the one check of an append before its body is read,
// under each dialect's rules. Every case where the dialects differ is
// here, so a check that ignored the rules would fail one of them.
func TestRefuseAppend(t *testing.T) {
	incomplete := sessionstore.Session{ID: "u", Offset: 5, Length: 10}
	deferred := sessionstore.Session{ID: "u", Offset: 5, Length: -1}
	done := sessionstore.Session{ID: "u", Offset: 10, Length: 10, Completed: true}
	final := sessionstore.Session{ID: "u", Offset: 10, Length: 10, Completed: true, ConcatOf: []string{"a", "b"}}
	at := func(offset, size, length int64) appendIntent {
		return appendIntent{offset: offset, size: size, length: length}
	}
	type want struct{ code, msg string } // "" code: no refusal
	var (
		none          = want{}
		pastLength    = want{"past_upload_length", errPastLength.Message}
		inconsistent  = want{errInconsistentLength.Code, errInconsistentLength.Message}
		tusFinal      = want{"final_upload", codeFinalUpload.err().Message}
		draftFinal    = want{"final_upload", "a final concatenation cannot be appended to"}
		lengthChanged = want{"invalid_length", "Upload-Length cannot change once set"}
		belowOffset   = want{"invalid_upload_length", "Upload-Length 3 is below the upload's offset 5"}
		offset        = want{"offset_mismatch", "Upload-Offset 4 does not match the upload's offset 5"}
		completed     = want{errDraftCompleted.Code, errDraftCompleted.Message}
	)
	cases := []struct {
		name     string
		sess     sessionstore.Session
		in       appendIntent
		tus      want
		draft6   want // interop 3 to 6
		draft7up want // interop 7 and 8
	}{
		{"fits", incomplete, at(5, 5, -1), none, none, none},
		{"offset mismatch", incomplete, at(4, 1, -1), offset, offset, offset},
		{"final concatenation", final, at(10, 0, -1), tusFinal, draftFinal, draftFinal},
		{"content for a completed upload", done, at(10, 1, -1), pastLength, completed, pastLength},
		{"replay of a completed upload", done, at(10, 0, -1), none, none, none},
		// TUS checks a given length against its own rules before the
		// body; the draft only that it agrees with the upload's.
		{"length changed", incomplete, at(5, 1, 12), lengthChanged, inconsistent, inconsistent},
		{"length on a completed upload", done, at(10, 0, 12), none, inconsistent, inconsistent},
		{"deferred length below the offset", deferred, at(5, 0, 3), belowOffset, none, none},
		// TUS refuses a body past the length before reading it; the
		// draft's body is checked as it streams (the service).
		{"body past the length", incomplete, at(5, 6, -1), pastLength, none, none},
		{"body past a length it sets", deferred, at(5, 6, 8), pastLength, none, none},
	}
	for _, c := range cases {
		for _, d := range []struct {
			name  string
			rules appendRules
			want  want
		}{{"tus", tusAppend, c.tus}, {"draft 6", draft(6).appendRules(), c.draft6}, {"draft 3", draft(3).appendRules(), c.draft6},
			{"draft 7", draft(7).appendRules(), c.draft7up}, {"draft 8", draft(8).appendRules(), c.draft7up}} {
			err := refuseAppend(c.sess, c.in, d.rules)
			var got want
			if e, ok := errors.AsType[*Error](err); ok {
				got = want{e.Code, e.Message}
			} else if err != nil {
				got = want{"?", err.Error()}
			}
			if got != d.want {
				t.Errorf("%s, %s: got %+v, want %+v", c.name, d.name, got, d.want)
			}
		}
	}
}
