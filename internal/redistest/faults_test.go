package redistest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// processors returns, for a client, the two ways the library sends
// commands: the plain client and its autopipeliner.
func processors(t *testing.T, c *redis.Client) map[string]func(context.Context, redis.Cmder) error {
	ap, err := c.AutoPipeline()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]func(context.Context, redis.Cmder) error{
		"plain":        c.Process,
		"autopipeline": ap.Process,
	}
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestFaultsHold: a DEL held back times out on the client; the key is still
// there; on Release the DEL lands and the key is gone. Meanwhile other
// commands go through on other connections.
func TestFaultsHold(t *testing.T) {
	s := Start(t)
	f := NewFaults(t)
	c := s.Client(t, f.Options, func(o *redis.Options) { o.ReadTimeout = 200 * time.Millisecond })
	for name, process := range processors(t, c) {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t)
			s.Exec(t, "set", "k", "v")
			r := f.Hold(And(Named("del"), HasArg("k")))
			err := process(ctx, redis.NewIntCmd(ctx, "del", "k"))
			if err == nil || !isTimeout(err) {
				t.Fatalf("held DEL: %v, want a timeout", err)
			}
			wait(t, r.Caught(), "the hold to catch the DEL")
			if got := r.Command().Args; len(got) != 2 || got[1] != "k" {
				t.Errorf("caught %q", got)
			}
			// The client moved on: other commands reach the server.
			if err := process(ctx, redis.NewStatusCmd(ctx, "set", "other", "1")); err != nil {
				t.Fatalf("SET after the held DEL: %v", err)
			}
			if got := s.Exec(t, "get", "k"); got != "v" {
				t.Fatalf("key before Release = %v, want v (the DEL is held back)", got)
			}
			if err := r.Release(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			if got := s.Exec(t, "exists", "k"); got != int64(0) {
				t.Fatalf("EXISTS after Release = %v, want 0 (the DEL landed)", got)
			}
			wait(t, r.Done(), "Done after Release")
		})
	}
}

// TestFaultsDropReply: the server executes the command, the client's
// connection dies with the reply in flight. Without retries the client
// sees the error once; with retries go-redis re-sends the command, which
// then runs twice.
func TestFaultsDropReply(t *testing.T) {
	s := Start(t)
	for _, retries := range []int{-1, 2} {
		f := NewFaults(t)
		c := s.Client(t, f.Options, func(o *redis.Options) { o.MaxRetries = retries })
		for name, process := range processors(t, c) {
			t.Run(name, func(t *testing.T) {
				ctx := ctxT(t)
				key := "n:" + name
				s.Exec(t, "del", key)
				r := f.DropReply(And(Named("incr"), HasArg(key)))
				cmd := redis.NewIntCmd(ctx, "incr", key)
				err := process(ctx, cmd)
				wait(t, r.Done(), "the server's reply")
				runs := s.Exec(t, "get", key)
				if retries < 0 {
					if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Errorf("INCR with its reply dropped: %v, want EOF", err)
					}
					if runs != "1" {
						t.Errorf("server ran INCR %v times, want 1", runs)
					}
					return
				}
				if err != nil || cmd.Val() != 2 || runs != "2" {
					t.Errorf("with retries: INCR = %d, %v; server ran it %v times; want a silent re-send (2, nil, 2)", cmd.Val(), err, runs)
				}
			})
		}
	}
}

// TestFaultsDelay: a delayed command arrives after the delay, and the
// commands before it in the same pipeline are answered.
func TestFaultsDelay(t *testing.T) {
	s := Start(t)
	f := NewFaults(t)
	c := s.Client(t, f.Options)
	ctx := ctxT(t)
	const d = 150 * time.Millisecond
	f.Delay(Named("ping"), d)
	start := time.Now()
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "a", "1", 0)
		p.Ping(ctx)
		return nil
	})
	if err != nil || len(cmds) != 2 {
		t.Fatalf("pipeline: %v", err)
	}
	if took := time.Since(start); took < d {
		t.Errorf("delayed PING answered after %v, want at least %v", took, d)
	}
}

// TestFaultsScript: Script matches a script by EVAL source and by EVALSHA.
func TestFaultsScript(t *testing.T) {
	s := Start(t)
	f := NewFaults(t)
	c := s.Client(t, f.Options, func(o *redis.Options) { o.ReadTimeout = 200 * time.Millisecond })
	ctx := ctxT(t)
	const src = "return redis.call('DEL', KEYS[1])"
	other := redis.NewScript("return 1")
	script := redis.NewScript(src)
	for _, sha := range []bool{false, true} {
		s.Exec(t, "set", "k", "v")
		r := f.Hold(Script(src))
		if err := other.Run(ctx, c, nil).Err(); err != nil {
			t.Fatalf("other script: %v", err)
		}
		var err error
		if sha {
			err = script.EvalSha(ctx, c, []string{"k"}).Err()
		} else {
			err = script.Eval(ctx, c, []string{"k"}).Err()
		}
		if !isTimeout(err) {
			t.Fatalf("held script (evalsha %v): %v, want a timeout", sha, err)
		}
		if err := r.Release(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if got := s.Exec(t, "exists", "k"); got != int64(0) {
			t.Fatalf("EXISTS after Release = %v, want 0", got)
		}
	}
}
