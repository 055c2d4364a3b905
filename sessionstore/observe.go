package sessionstore

import (
	"context"
	"time"
)

// Observer is told of the Redis store's calls to Redis, for the caller's
// metrics, without the store knowing about them.
// Implementations must be safe for concurrent use and fast: they run on
// every store call.
type Observer interface {
	// RedisScript reports one run of the Lua script of operation op
	// ("commit", "acquire lease", …: the store's own names) that took d;
	// err is Redis's failure (a network error, a timeout, an error reply),
	// nil when Redis answered, whatever the script's verdict (a refused
	// compare-and-set is an answer, not an error).
	RedisScript(op string, d time.Duration, err error)
}

// ProbeQueueStats is the state of the probe queue, for /metrics.
type ProbeQueueStats struct {
	// Jobs are the jobs waiting, claimed or scheduled for a retry.
	Jobs int64
	// Oldest is when the oldest of them was queued or became ready again
	// (zero: none).
	Oldest time.Time
	// Dead is the length of the dead-letter list.
	Dead int64
}

// QueueLengths are the jobs of the store's two queues that are not settled
// yet (waiting, claimed by a worker, or scheduled for a retry), for
// /metrics. Nothing trims the queues: a backlog that grows (a webhook
// receiver down, no probe worker running) shows here before it fills the
// store's memory or disk.
type QueueLengths struct {
	Probe   int64
	Webhook int64
}

// QueueLengther is what the stores share for the queues' lengths, kept
// out of Store like ProbeQueueStatser.
type QueueLengther interface {
	QueueLengths(ctx context.Context) (QueueLengths, error)
}

// ProbeQueueStatser is what the stores share for the probe queue's
// metrics; kept out of Store so that other implementations need not
// answer it.
type ProbeQueueStatser interface {
	ProbeQueueStats(ctx context.Context) (ProbeQueueStats, error)
}
