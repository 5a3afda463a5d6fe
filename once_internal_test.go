package distlock

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distlock/distlock/internal/redistest"
)

// TestOnceFinishIdempotent: the finish script may be retried after a lost
// reply: run again by the same holder it answers 1 and changes nothing; a
// holder whose token is not there (nor its marker) gets 0 and writes
// nothing; the acquire script reports the marker as done, whoever asks.
func TestOnceFinishIdempotent(t *testing.T) {
	ctx := context.Background()
	c := redistest.Start(t).Client(t)
	rk := lockKey(DefaultKeyPrefix, "k")

	res, err := onceAcquireScript.Run(ctx, c, []string{rk}, "tok", 10000, onceDonePrefix).Int64Slice()
	require.NoError(t, err)
	assert.Equal(t, []int64{onceObtained, 0}, res)

	for range 2 {
		n, err := onceFinishScript.Run(ctx, c, []string{rk}, "tok", onceDonePrefix+"tok", 60000, publishPlain).Int64()
		require.NoError(t, err)
		assert.Equal(t, int64(1), n)
	}
	v, err := c.Get(ctx, rk).Result()
	require.NoError(t, err)
	assert.Equal(t, onceDonePrefix+"tok", v)
	ttl, err := c.PTTL(ctx, rk).Result()
	require.NoError(t, err)
	assert.Greater(t, ttl, 59*time.Second, "the window was not set")

	n, err := onceFinishScript.Run(ctx, c, []string{rk}, "other", onceDonePrefix+"other", 60000, publishPlain).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(0), n, "a stranger marked the key done")
	v, err = c.Get(ctx, rk).Result()
	require.NoError(t, err)
	assert.Equal(t, onceDonePrefix+"tok", v)

	res, err = onceAcquireScript.Run(ctx, c, []string{rk}, "other", 10000, onceDonePrefix).Int64Slice()
	require.NoError(t, err)
	assert.Equal(t, int64(onceDone), res[0])
	assert.Greater(t, res[1], int64(59000))
}
