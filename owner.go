package distlock

import (
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Owner labels: who holds a lock, for the people operating it (Status,
// List, the CLI), never the secret token.
//
// The label is stored in the lock key itself, after the token:
//
//	<token> NUL "owner:" <label>
//
// so that taking a lock stays one SET NX PX and releasing and refreshing
// one script each, with no second key to write, expire and delete. The
// scripts that act for a holder compare the whole value, which only the
// holder knows (it holds the token); only the re-attach of a caller's
// token (acquire.lua) compares the token part, so that a process restarted
// with another pid (another label) still re-attaches. Status and List
// read the label back server-side and never return the token. The token
// part is everything before the last NUL that is followed by "owner:"
// (the label holds no NUL); a value without one (written by a version
// before labels) is a bare token with no label.

// ownerSep separates the token from the owner label in a stored value.
const ownerSep = "\x00owner:"

// maxOwnerLen bounds an owner label, which every lock key of its holder
// carries.
const maxOwnerLen = 256

// DefaultOwner returns the owner label of locks taken without WithOwner:
// the host name and the process id, "host:pid" (e.g. "web-3:4242"), or
// "pid:<pid>" when the host name is unknown. It is computed once per
// process.
func DefaultOwner() string { return defaultOwner() }

var defaultOwner = sync.OnceValue(func() string {
	pid := strconv.Itoa(os.Getpid())
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "pid:" + pid
	}
	label := host + ":" + pid
	if checkOwner(label) != nil {
		return "pid:" + pid
	}
	return label
})

type ownerOption string

func (w ownerOption) apply(o *options) { o.owner = string(w) }
func (w ownerOption) String() string   { return fmt.Sprintf("WithOwner(%q)", string(w)) }

// WithOwner sets the owner label stored with each lock: who holds it, as
// Status, List and the CLI show it to operators (the token, the lock's
// credential, is never shown). Default DefaultOwner(): the host name and
// process id, "host:pid". The empty label shows no owner. A label with a
// NUL byte, longer than 256 bytes or not valid UTF-8 makes the call fail
// with ErrInvalidArgument. Re-attaching with WithToken (say, after a
// restart under another pid) replaces the label with the caller's; a Lock
// still held under the old label then finds at its next refresh that it no
// longer holds the lock (ErrNotHeld).
func WithOwner(label string) Option { return ownerOption(label) }

// checkOwner reports whether label can be stored after a token.
func checkOwner(label string) error {
	switch {
	case len(label) > maxOwnerLen:
		return invalidf("owner label of %d bytes, at most %d", len(label), maxOwnerLen)
	case strings.IndexByte(label, 0) >= 0:
		return invalidf("owner label %q holds a NUL byte", label)
	case !utf8.ValidString(label):
		return invalidf("owner label %q is not valid UTF-8", label)
	}
	return nil
}

// storedValue is what a lock key holds for token under the owner label.
func storedValue(token, owner string) string {
	return token + ownerSep + owner
}

// newStoredValue returns the stored value of a fresh random token (a UUID
// v4) under the owner label, built in one allocation: the token is a
// part of it (tokenOf), not a string of its own.
func newStoredValue(owner string) string {
	u := uuid.Must(uuid.NewRandom())
	var buf [36]byte
	hex.Encode(buf[:8], u[:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	var b strings.Builder
	b.Grow(len(buf) + len(ownerSep) + len(owner))
	b.Write(buf[:])
	b.WriteString(ownerSep)
	b.WriteString(owner)
	return b.String()
}

// splitValue splits a stored value into its token and owner label; a
// value without a label (written before labels existed) is all token.
func splitValue(v string) (token, owner string) {
	if i := strings.LastIndexByte(v, 0); i >= 0 && strings.HasPrefix(v[i:], ownerSep) {
		return v[:i], v[i+len(ownerSep):]
	}
	return v, ""
}

// tokenOf returns the token part of a stored value.
func tokenOf(v string) string {
	t, _ := splitValue(v)
	return t
}

// Owner returns the owner label stored with the lock (WithOwner; default
// DefaultOwner()).
func (l *Lock) Owner() string {
	_, owner := splitValue(l.token)
	return owner
}
