package reliability_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// uuidV4 is the textual form of a random (version 4, RFC 4122 variant)
// UUID: 122 random bits.
var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestTokens: every token is a UUID v4 (122 random bits) and no two of
// many are equal.
func TestTokens(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	ctx := context.Background()
	const n = 2000
	seen := make(map[string]bool, n)
	for i := range n {
		l, err := lk.Obtain(ctx, "tok-"+strconv.Itoa(i%50))
		if err != nil {
			t.Fatal(err)
		}
		tok := l.Token()
		if !uuidV4.MatchString(tok) {
			t.Fatalf("token %q is not a UUID v4", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q handed out twice", tok)
		}
		seen[tok] = true
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("RESULT %s: %d tokens, all UUID v4 (122 random bits), all distinct", t.Name(), n)
}

// TestForeignTokens: only the holder's token releases or refreshes a lock;
// guessed tokens and the stale token of an earlier holder are refused and
// leave the current holder's lock untouched.
func TestForeignTokens(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	lk := distlock.New(c)
	ctx := context.Background()
	stale, err := lk.Obtain(ctx, "guarded", distlock.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Release(ctx); err != nil {
		t.Fatal(err)
	}
	cur, err := lk.Obtain(ctx, "guarded", distlock.WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Release(ctx)

	// The library's own scripts, driven with other tokens, through the only
	// door a foreign process has: re-attaching with WithToken.
	guesses := []string{stale.Token(), "", "*", "' or 1 --", strings.ToUpper(cur.Token()), cur.Token()[:35], cur.Token() + " ",
		storedValue(cur), cur.Token() + "\x00owner:"} // the holder's whole stored value is not its token either
	for i := 0; i < 200; i++ {
		guesses = append(guesses, newUUIDish(t))
	}
	refused := 0
	for _, g := range guesses {
		if g == "" {
			continue // WithToken("") means "generate one"
		}
		_, err := lk.Obtain(ctx, "guarded", distlock.WithToken(g), distlock.WithTTL(time.Minute))
		if !errors.Is(err, distlock.ErrNotObtained) {
			t.Fatalf("Obtain with guessed token %q: %v, want ErrNotObtained", g, err)
		}
		refused++
	}
	// The stale holder's Lock value cannot refresh or release either.
	if err := stale.Refresh(ctx, time.Minute); !errors.Is(err, distlock.ErrNotHeld) {
		t.Errorf("stale Refresh: %v, want ErrNotHeld", err)
	}
	if err := stale.Release(ctx); !errors.Is(err, distlock.ErrNotHeld) {
		t.Errorf("stale Release: %v, want ErrNotHeld", err)
	}
	got, err := c.Get(ctx, lockKeyOf("guarded")).Result()
	if err != nil || got != storedValue(cur) {
		t.Fatalf("holder's lock changed: %q %v", got, err)
	}
	if ttl, err := cur.TTL(ctx); err != nil || ttl < 50*time.Second {
		t.Fatalf("holder's TTL %v %v", ttl, err)
	}
	t.Logf("RESULT %s: %d guessed/stale tokens refused (ErrNotObtained), stale Refresh/Release refused (ErrNotHeld), holder untouched", t.Name(), refused)
}

// storedValue is what the lock key of l holds: its token, NUL "owner:"
// and its owner label (the layout documented in owner.go).
func storedValue(l *distlock.Lock) string { return l.Token() + "\x00owner:" + l.Owner() }

func newUUIDish(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hexd = "0123456789abcdef"
	var sb strings.Builder
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			sb.WriteByte('-')
		}
		sb.WriteByte(hexd[x>>4])
		sb.WriteByte(hexd[x&15])
	}
	return sb.String()
}

// minimalACL is the least a lock user needs (documented in RELIABILITY.md):
// SET (plain obtain), EVALSHA and EVAL (the scripts; EVAL after NOSCRIPT),
// the commands the scripts call (GET, SET, DEL, PEXPIRE, PTTL, INCR,
// PUBLISH), on keys ~distlock:* and channels &distlock:*; SUBSCRIBE and
// UNSUBSCRIBE let blocked callers be woken by a release instead of polling.
var minimalACL = []string{
	"on", ">lockpass", "resetkeys", "~distlock:*", "resetchannels", "&distlock:*", "-@all",
	"+set", "+get", "+del", "+pexpire", "+pttl", "+incr", "+publish", "+evalsha", "+eval",
	"+subscribe", "+unsubscribe",
}

// TestACLEachCommandNeeded: without any one of the required commands some
// lock operation fails, with the server's NOPERM/script error, never with
// ErrNotObtained. (SUBSCRIBE and PUBLISH are not required: blocked callers
// then poll, and a release that cannot publish still succeeds.)
func TestACLEachCommandNeeded(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for i, drop := range minimalACL {
		if drop[0] != '+' || drop == "+subscribe" || drop == "+unsubscribe" || drop == "+publish" {
			continue
		}
		acl := slices.Delete(slices.Clone(minimalACL), i, i+1)
		name := "no" + drop[1:]
		srv.Exec(t, append([]any{"ACL", "SETUSER", name, "reset"}, toAny(acl)...)...)
		lk := distlock.New(srv.Client(t, func(o *redis.Options) { o.Username, o.Password = name, "lockpass" }))
		srv.Exec(t, "SCRIPT", "FLUSH")
		key := "need-" + drop[1:]
		err := func() error {
			for _, opts := range [][]distlock.Option{nil, {distlock.WithFencing()}} {
				l, err := lk.Obtain(ctx, key, opts...)
				if err != nil {
					return err
				}
				if err := l.Refresh(ctx, 0); err != nil {
					return err
				}
				if _, err := l.TTL(ctx); err != nil {
					return err
				}
				if err := l.Release(ctx); err != nil {
					return err
				}
			}
			return nil
		}()
		if err == nil || errors.Is(err, distlock.ErrNotObtained) {
			t.Errorf("without %s: %v; want a permission error", drop, err)
			continue
		}
		t.Logf("without %s: %v", drop, err)
	}
}

// TestACL: a user with minimalACL can obtain (plain, fenced, blocking with
// wake-up), refresh and release; a user without the script commands or
// without the key pattern gets a clear error that is not ErrNotObtained.
func TestACL(t *testing.T) {
	srv := redistest.Start(t)
	srv.Exec(t, append([]any{"ACL", "SETUSER", "locker"}, toAny(minimalACL)...)...)
	srv.Exec(t, "ACL", "SETUSER", "noscripts", "on", ">p", "~distlock:*", "&distlock:*", "-@all", "+hello", "+set", "+get")
	srv.Exec(t, "ACL", "SETUSER", "otherkeys", "on", ">p", "~app:*", "&distlock:*", "+@all")
	ctx := context.Background()
	user := func(name, pass string) *redis.Client {
		return srv.Client(t, func(o *redis.Options) { o.Username, o.Password = name, pass })
	}

	lk := distlock.New(user("locker", "lockpass"))
	other := distlock.New(user("locker", "lockpass"))
	for _, opts := range [][]distlock.Option{nil, {distlock.WithFencing()}, {distlock.WithAutoRefresh()}} {
		l, err := lk.Obtain(ctx, "acl", append(opts, distlock.WithTTL(time.Second))...)
		if err != nil {
			t.Fatalf("minimal ACL, Obtain %v: %v", opts, err)
		}
		if err := l.Refresh(ctx, 0); err != nil {
			t.Fatalf("minimal ACL, Refresh: %v", err)
		}
		if _, err := l.TTL(ctx); err != nil {
			t.Fatalf("minimal ACL, TTL: %v", err)
		}
		// A blocked caller (SUBSCRIBE) is woken by the release (PUBLISH).
		got := make(chan error, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			w, err := other.Obtain(wctx, "acl", distlock.WithBlocking(), distlock.WithTTL(time.Second))
			if err == nil {
				err = w.Release(ctx)
			}
			got <- err
		}()
		if err := l.Release(ctx); err != nil {
			t.Fatalf("minimal ACL, Release: %v", err)
		}
		if err := <-got; err != nil {
			t.Fatalf("minimal ACL, blocked Obtain: %v", err)
		}
	}
	// SCRIPT FLUSH: EVALSHA answers NOSCRIPT, EVAL must be allowed too.
	srv.Exec(t, "SCRIPT", "FLUSH")
	if l, err := lk.Obtain(ctx, "acl", distlock.WithFencing()); err != nil {
		t.Fatalf("minimal ACL after SCRIPT FLUSH: %v", err)
	} else {
		_ = l.Release(ctx)
	}

	for _, tt := range []struct{ user, want string }{
		{"noscripts", "NOPERM"},
		{"otherkeys", "NOPERM"},
	} {
		l, err := distlock.New(user(tt.user, "p")).Obtain(ctx, "acl", distlock.WithFencing())
		if err == nil {
			_ = l.Release(ctx)
			t.Fatalf("user %s obtained a lock", tt.user)
		}
		if errors.Is(err, distlock.ErrNotObtained) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("user %s: %v; want a %s error that is not ErrNotObtained", tt.user, err, tt.want)
		}
		t.Logf("user %s: %v", tt.user, err)
	}
	t.Logf("RESULT %s: ACL SETUSER locker %s: obtain/fence/refresh/TTL/release/blocking wake-up/EVAL fallback OK; users without scripts or keys get NOPERM",
		t.Name(), strings.Join(minimalACL[2:], " "))

}

// fairACL is minimalACL plus the list commands of the queue of callers
// that wait their turn (WithFairness, the default): with minimalACL alone
// they barge.
var fairACL = append(slices.Clone(minimalACL), "+lmove", "+mget", "+lindex", "+lpop", "+rpop", "+rpush", "+lrem", "+decr")

// TestACLFair: a user with fairACL queues its blocked callers and gets the
// lock handed over in turn; one with minimalACL alone is refused the
// queue's commands and barges instead, with no error: its blocked caller
// is served when the lock is freed.
func TestACLFair(t *testing.T) {
	srv := redistest.Start(t)
	srv.Exec(t, append([]any{"ACL", "SETUSER", "fair"}, toAny(fairACL)...)...)
	srv.Exec(t, append([]any{"ACL", "SETUSER", "locker"}, toAny(minimalACL)...)...)
	admin := newClientT(t, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	user := func(name, pass string) *distlock.Locker {
		return distlock.New(srv.Client(t, func(o *redis.Options) { o.Username, o.Password = name, pass }), distlock.WithFairness(true))
	}
	for _, tt := range []struct {
		user   string
		queued int64
	}{{"fair", 1}, {"locker", 0}} {
		holder, waiter := user(tt.user, "lockpass"), user(tt.user, "lockpass")
		key := "acl-" + tt.user
		h, err := holder.Obtain(ctx, key, distlock.WithTTL(time.Minute), distlock.WithFencing())
		if err != nil {
			t.Fatalf("%s: %v", tt.user, err)
		}
		w := startFairWaiter(ctx, waiter, key)
		if tt.queued > 0 {
			waitQueueLen(t, admin, key, tt.queued)
		} else {
			// Refused the queue: the waiter falls back to a plain attempt,
			// which finds the lock held (its first script, acquire.lua, ran).
			deadline := time.Now().Add(10 * time.Second)
			for admin.Exists(ctx, lockKeyOf(key)+":q").Val() == 0 && !hasScript(t, admin) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // polling Redis, not synchronisation between goroutines
			}
		}
		released := time.Now()
		if err := h.Release(ctx); err != nil {
			t.Fatalf("%s: %v", tt.user, err)
		}
		w.wait(t, 10*time.Second)
		if got := admin.Exists(ctx, lockKeyOf(key)+":q").Val(); tt.queued == 0 && got != 0 {
			t.Errorf("%s: a queue was written", tt.user)
		}
		if err := w.l.Release(ctx); err != nil {
			t.Fatalf("%s: %v", tt.user, err)
		}
		t.Logf("RESULT %s/%s: queued %d; the blocked caller got the lock %v after the release (fence %d after %d)",
			t.Name(), tt.user, tt.queued, w.at.Sub(released).Round(time.Millisecond), w.l.Fence(), h.Fence())
	}
}

// hasScript reports whether a lock script has run (acquire.lua of a
// blocked caller after its SET NX), from INFO commandstats.
func hasScript(t *testing.T, c *redis.Client) bool {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(info, "cmdstat_pttl:")
}

func toAny(s []string) []any {
	a := make([]any, len(s))
	for i, v := range s {
		a[i] = v
	}
	return a
}

// TestTLS: the library works over rediss:// with a certificate generated
// here for 127.0.0.1.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// The plain port stays (the harness probes it); TLS listens on a
	// second free port.
	port := freeLoopbackPort(t)
	srv := redistest.Start(t, "--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", certFile, "--tls-auth-clients", "no")

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	opt, err := redis.ParseURL("rediss://127.0.0.1:" + strconv.Itoa(port) + "/0")
	if err != nil {
		t.Fatal(err)
	}
	opt.TLSConfig.RootCAs = pool
	opt.MaintNotificationsConfig = noMaint()
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := context.Background()
	lk := distlock.New(c)
	l, err := lk.Obtain(ctx, "tls", distlock.WithFencing())
	if err != nil {
		t.Fatalf("obtain over TLS: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// A client that does not trust the certificate gets a TLS error, not
	// ErrNotObtained.
	bad, _ := redis.ParseURL("rediss://127.0.0.1:" + strconv.Itoa(port) + "/0")
	bad.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	bad.MaxRetries = -1
	bad.MaintNotificationsConfig = noMaint()
	bc := redis.NewClient(bad)
	defer bc.Close()
	_, err = distlock.New(bc).Obtain(ctx, "tls")
	if err == nil || errors.Is(err, distlock.ErrNotObtained) {
		t.Fatalf("untrusted certificate: %v, want a TLS error", err)
	}
	t.Logf("RESULT %s: obtain/release with fencing over rediss:// (self-signed 127.0.0.1 certificate); untrusted certificate: %v", t.Name(), err)
	_ = srv
}

func freeLoopbackPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// selfSigned returns a PEM certificate and key for 127.0.0.1, valid for an
// hour.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "distlock test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
