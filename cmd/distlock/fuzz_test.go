package main

import (
	"bytes"
	"net/url"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzArgs: any argument list for run, status and help is parsed without a
// panic and ends in help (0) or a one-line usage error (2). No Redis URL
// is ever given (arguments mentioning redis are dropped and $REDIS_URL is
// unset), so nothing is dialled and no COMMAND is run: every path stops at
// "no Redis given" at the latest.
func FuzzArgs(f *testing.F) {
	for _, s := range []string{
		"run\x00k\x00--\x00true",
		"run\x00--ttl\x00-1s\x00k\x00--\x00true",
		"run\x00--wait\x00abc\x00k",
		"run\x00--conflict-exit-code\x00300\x00k\x00--\x00x",
		"run\x00--node-timeout\x000\x00k\x00--\x00x",
		"run\x00\x00--\x00x",
		"run\x00--help",
		"status",
		"status\x00a\x00b",
		"status\x00--prefix\x00\x00k",
		"help\x00run",
		"help\x00status",
		"-h",
		"bogus\x00x",
		"run\x00---ttl=1s\x00k\x00x",
		"run\x00-fencing=maybe\x00k\x00--\x00x",
		"run\x00k\x00--wait\x005s\x00--\x00x",
		"run\x00--wait\x005\x00k\x00--\x00x",
		"run\x00--once-per\x001m\x00--wait\x001s\x00k\x00--\x00x",
		"run\x00--once-per\x00-1s\x00k\x00--\x00x",
		"run\x00--ttl\x0010s\x00--grace\x006s\x00k\x00--\x00x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		os.Unsetenv("REDIS_URL")
		var args []string
		for _, a := range strings.Split(joined, "\x00") {
			if strings.Contains(strings.ToLower(a), "redis") {
				continue // never a Redis to dial
			}
			args = append(args, a)
		}
		if len(args) > 0 && args[0] == "demo" {
			return // demo runs a simulation, not argument parsing
		}
		if len(args) > 1 && args[0] == "help" && args[1] == "demo" {
			return
		}
		var o, e bytes.Buffer
		saveOut, saveErr := out, errOut
		out, errOut = &o, &e
		defer func() { out, errOut = saveOut, saveErr }()
		code := dispatch(args)
		switch code {
		case exitOK:
			if o.Len() == 0 {
				t.Fatalf("%q: exit 0 without help text", args)
			}
		case exitUsage:
			msg := e.String()
			if len(args) == 0 {
				break // the top-level usage
			}
			if !strings.HasPrefix(msg, "distlock: ") || strings.Count(msg, "\n") != 1 {
				t.Fatalf("%q: usage error is not one 'distlock: ' line: %q", args, msg)
			}
		default:
			t.Fatalf("%q: exit %d (stdout %q, stderr %q), want 0 or 2", args, code, o.String(), e.String())
		}
	})
}

// FuzzRedact: no piece of 4 characters of a password given in a Redis URL
// ever appears in what distlock prints, whatever the user name, password
// (raw '@', ':', spaces, escapes) and message; a password of 3 characters
// never appears whole. Checked for the password as typed in the URL and as
// Redis receives it (URL-decoded). The template's own text is no excuse:
// a piece of the password is blanked out wherever it is.
func FuzzRedact(f *testing.F) {
	f.Add("user", "s3cret", "connect %s: dial failed for %p")
	f.Add("", "pa:ss@word", "%s")
	f.Add("u", "p%40ss", "auth %p failed on %s")
	f.Add("default", "ünï\x00cødé", "%s %s %p")
	f.Add("user", "abc@SECRETTAIL", "dial %s: refused")
	f.Add("u", "xxxxxa", "%p and %s")
	f.Add("u", "x*#~?!%=+_ab", "%p%p %s")
	f.Fuzz(func(t *testing.T, user, pass, tmpl string) {
		if strings.ContainsAny(user, ":@/") {
			return // user names cannot hold these
		}
		saved := secrets
		secrets = nil
		defer func() { secrets = saved }()
		u := "redis://" + user + ":" + pass + "@127.0.0.1:6379/0"
		remember(u)
		forms := []string{pass}
		if pu, err := url.Parse(u); err == nil && pu.User != nil {
			p, _ := pu.User.Password()
			forms = append(forms, p)
		}
		msg := strings.ReplaceAll(strings.ReplaceAll(tmpl, "%s", u), "%p", forms[len(forms)-1])
		got := redact(msg)
		for _, p := range forms {
			// Character boundaries; a byte that is not UTF-8 is one.
			var at []int
			for i := 0; i < len(p); {
				at = append(at, i)
				_, n := utf8.DecodeRuneInString(p[i:])
				i += n
			}
			at = append(at, len(p))
			if len(at)-1 < 4 {
				if len(p) >= 3 && strings.Contains(got, p) {
					t.Fatalf("password %q leaked whole: %q", p, got)
				}
				continue
			}
			for i := 0; i+4 < len(at); i++ {
				if piece := p[at[i]:at[i+4]]; strings.Contains(got, piece) {
					t.Fatalf("piece %q of password %q leaked: %q", piece, p, got)
				}
			}
		}
	})
}
