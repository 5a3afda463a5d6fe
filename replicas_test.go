package distlock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock"
	"github.com/distlock/distlock/internal/redistest"
)

// Scenario: a primary with one replica; the replica is paused (SIGSTOP), so
// it acknowledges nothing. Obtain with WithReplicas(1, 100ms) must fail
// with ErrNotReplicated (not ErrNotObtained), telling 0 of 1, and leave no
// lock on the primary; retries are attempts of their own (one WAIT each);
// without the option the same Obtain succeeds; once the replica is back,
// Obtain with the option succeeds.
func TestReplicasObtainNotAcknowledged(t *testing.T) {
	rs := redistest.StartReplicated(t, 1)
	primary := rs.Primary
	lk := distlock.New(primary.Client(t))
	ctx := context.Background()
	repl := distlock.WithReplicas(1, 100*time.Millisecond)

	rs.Replicas[0].Pause(t)
	start := time.Now()
	_, err := lk.Obtain(ctx, "r", repl)
	require.ErrorIs(t, err, distlock.ErrNotReplicated)
	assert.NotErrorIs(t, err, distlock.ErrNotObtained)
	var re *distlock.ReplicationError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, distlock.ReplicationError{Acked: 0, Wanted: 1}, *re)
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "WAIT's timeout")
	assert.EqualValues(t, 0, primary.Exec(t, "DBSIZE"), "the unacknowledged lock was not given back")

	waits0 := primary.CommandStats(t)["wait"] // the scripts are loaded by now

	_, err = lk.Obtain(ctx, "r", repl, distlock.WithFencing(),
		distlock.WithRetry(distlock.LimitRetry(distlock.LinearBackoff(10*time.Millisecond), 2)))
	require.ErrorIs(t, err, distlock.ErrNotReplicated)
	assert.Equal(t, waits0+3, primary.CommandStats(t)["wait"], "one WAIT per attempt: 1 + 2 retries")
	assert.EqualValues(t, 0, primary.Exec(t, "EXISTS", "distlock:{r}"))

	plain, err := lk.Obtain(ctx, "r")
	require.NoError(t, err, "without WithReplicas the lock is obtained")
	require.NoError(t, plain.Release(ctx))

	rs.Replicas[0].Resume(t)
	// Once the resumed replica has caught up with everything so far:
	assert.EqualValues(t, 1, primary.Exec(t, "WAIT", 1, 5000))
	// (a timeout that a loaded machine cannot miss where success is expected)
	l, err := lk.Obtain(ctx, "r", distlock.WithReplicas(1, 800*time.Millisecond), distlock.WithFencing())
	require.NoError(t, err)
	assert.Equal(t, distlock.StoredValue(l), rs.Replicas[0].Exec(t, "GET", "distlock:{r}"), "acknowledged: on the replica")
	require.NoError(t, l.Release(ctx))
}

// Scenario: a lock obtained with WithReplicas; then the replica pauses. An
// explicit Refresh must fail with ErrNotReplicated and leave ValidUntil
// where it was; an auto-refreshed lock whose refreshes are never
// acknowledged must end (Done closes, Err matches ErrNotHeld) by its
// ValidUntil, never later.
func TestReplicasRefreshNotAcknowledged(t *testing.T) {
	rs := redistest.StartReplicated(t, 1)
	lk := distlock.New(rs.Primary.Client(t))
	ctx := context.Background()
	// Timeouts long enough that a loaded machine's replica answers in time
	// while it runs.
	l, err := lk.Obtain(ctx, "refresh", distlock.WithReplicas(1, 500*time.Millisecond), distlock.WithTTL(10*time.Second))
	require.NoError(t, err)
	auto, err := lk.Obtain(ctx, "auto", distlock.WithReplicas(1, 400*time.Millisecond),
		distlock.WithTTL(2*time.Second), distlock.WithAutoRefresh())
	require.NoError(t, err)
	require.NoError(t, l.Refresh(ctx, 0), "acknowledged refresh")

	rs.Replicas[0].Pause(t)
	before := l.ValidUntil()
	err = l.Refresh(ctx, 0)
	require.ErrorIs(t, err, distlock.ErrNotReplicated)
	assert.NotErrorIs(t, err, distlock.ErrNotHeld)
	assert.Equal(t, before, l.ValidUntil(), "an unacknowledged refresh moved ValidUntil")
	assert.NoError(t, l.Err())

	until := auto.ValidUntil()
	waitClosed(t, auto.Done(), waitTimeout, "auto-refreshed lock with unacknowledged refreshes")
	assert.ErrorIs(t, auto.Err(), distlock.ErrNotHeld)
	assert.ErrorIs(t, auto.Err(), distlock.ErrNotReplicated, "the cause: the last refresh's error")
	assert.False(t, time.Now().Before(until), "Done closed before ValidUntil: a refresh moved it")
	assert.Less(t, time.Since(until), time.Second, "Done closed long after ValidUntil")
	rs.Replicas[0].Resume(t)
	// A lock whose validity ran out is not released (nothing is sent). The
	// primary ran each unacknowledged refresh, so its key lives there
	// until the last refresh's TTL runs out: a cost in liveness only.
	require.ErrorIs(t, auto.Release(ctx), distlock.ErrNotHeld)
	assert.Equal(t, distlock.StoredValue(auto), rs.Primary.Exec(t, "GET", "distlock:{auto}"))
	require.NoError(t, l.Release(ctx))
	assert.EqualValues(t, 0, rs.Primary.Exec(t, "EXISTS", "distlock:{refresh}"))
}

// Bad settings of WithReplicas, and WithReplicas on a Redlock, are refused
// with ErrInvalidArgument before anything is sent.
func TestReplicasInvalid(t *testing.T) {
	srv := redistest.Start(t)
	lk := distlock.New(srv.Client(t))
	ctx := context.Background()
	for _, give := range []distlock.Option{
		distlock.WithReplicas(0, time.Second),
		distlock.WithReplicas(-1, time.Second),
		distlock.WithReplicas(1, 0),
		distlock.WithReplicas(1, -time.Second),
		distlock.WithReplicas(1, 30*time.Second), // not below the default TTL
		distlock.WithReplicas(1, time.Second),    // not below the client's ReadTimeout (1s)
	} {
		_, err := lk.Obtain(ctx, "bad", give)
		assert.ErrorIs(t, err, distlock.ErrInvalidArgument, "%v", give)
	}
	nodes := redistest.StartN(t, 3)
	rl := newRL(t, nodes)
	_, err := rl.Obtain(ctx, "bad", distlock.WithReplicas(1, time.Second))
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)
	// As a default of NewRedlock too, with the reason.
	_, err = distlock.NewRedlock(rlClients(t, nodes), distlock.WithReplicas(1, time.Second)).Obtain(ctx, "bad")
	assert.ErrorIs(t, err, distlock.ErrInvalidArgument)
	assert.Contains(t, fmt.Sprint(err), "WithReplicas")
	assert.EqualValues(t, 0, srv.Exec(t, "DBSIZE"))

	// A default of New that Once leaves out is not checked against Once's
	// TTL either.
	onceLk := distlock.New(srv.Client(t), distlock.WithReplicas(1, 500*time.Millisecond))
	require.NoError(t, onceLk.Once(ctx, "once", time.Second, func(context.Context) error { return nil },
		distlock.WithTTL(400*time.Millisecond)))

	// WAIT refused (a user without +wait): the error says so, is not
	// contention, and the lock the script wrote is given back.
	srv.Exec(t, "ACL", "SETUSER", "nowait", "on", ">pw", "~*", "&*", "+@all", "-wait")
	nowait := distlock.New(srv.Client(t, func(o *redis.Options) { o.Username, o.Password = "nowait", "pw" }))
	_, err = nowait.Obtain(ctx, "nowait", distlock.WithReplicas(1, 100*time.Millisecond))
	require.Error(t, err)
	assert.NotErrorIs(t, err, distlock.ErrNotObtained)
	assert.Contains(t, err.Error(), "NOPERM")
	assert.EqualValues(t, 0, srv.Exec(t, "EXISTS", "distlock:{nowait}"), "the unacknowledged lock was left behind")

	// A Locker on a Redis Cluster sends the script and its WAIT to the
	// key's master; with no replica there, nothing is acknowledged.
	cl := redistest.StartCluster(t, 3)
	_, err = distlock.New(cl.Client(t)).Obtain(ctx, "c", distlock.WithReplicas(1, 20*time.Millisecond))
	require.ErrorIs(t, err, distlock.ErrNotReplicated)
	var re *distlock.ReplicationError
	require.True(t, errors.As(err, &re))
	assert.Equal(t, 0, re.Acked)
}
