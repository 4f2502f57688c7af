package auth

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// lastUsedAt need only be accurate to within a minute (API.md, "Sessions"),
// so a request never waits for it: while RunHousekeeping runs, the sessions
// due a write (see touchInterval) are queued and written together, one
// statement every touchFlushInterval, instead of one UPDATE and one durable
// commit per session in the request that happened to be due. Without
// RunHousekeeping (a Service used on its own) the write is made in the
// request, as before. The first use of a rotated pair is never queued: it
// ends the grace of the refresh token before it (see Refresh), which must
// hold as soon as that use is answered.
const (
	touchFlushInterval = time.Second
	// touchBatch bounds one statement's list of ids.
	touchBatch = 1000
)

// touchQueue holds the sessions whose lastUsedAt is to be written.
type touchQueue struct {
	mu      sync.Mutex
	flusher int // RunHousekeeping loops writing the queue
	pending map[string]struct{}
}

// queue queues session id's lastUsedAt write, reporting false when no
// flusher runs (the caller writes it itself).
func (q *touchQueue) queue(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.flusher == 0 {
		return false
	}
	if q.pending == nil {
		q.pending = map[string]struct{}{}
	}
	q.pending[id] = struct{}{}
	return true
}

// take empties the queue.
func (q *touchQueue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := make([]string, 0, len(q.pending))
	for id := range q.pending {
		ids = append(ids, id)
	}
	clear(q.pending)
	return ids
}

func (q *touchQueue) setFlushing(on bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if on {
		q.flusher++
	} else {
		q.flusher--
	}
}

// runTouches writes the queued lastUsedAt every touchFlushInterval until
// ctx ends, then once more, so that a clean shutdown loses none.
func (s *Service) runTouches(ctx context.Context) {
	s.touches.setFlushing(true)
	every(ctx, touchFlushInterval, func(round context.Context) {
		if err := s.flushTouches(round); err != nil {
			s.log.WarnContext(ctx, "writing lastUsedAt", "err", err)
		}
	})
	s.touches.setFlushing(false)
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), touchFlushInterval)
	defer cancel()
	if err := s.flushTouches(final); err != nil {
		s.log.WarnContext(ctx, "writing lastUsedAt at shutdown", "err", err)
	}
}

// flushTouches writes lastUsedAt = now for every queued session, and erases
// the sealed pair of those past their reuse window as touch does. Ids that
// could not be written are queued again.
func (s *Service) flushTouches(ctx context.Context) error {
	ids := s.touches.take()
	slices.Sort(ids) // one lock order for concurrent flushes of two instances
	for len(ids) > 0 {
		n := min(len(ids), touchBatch)
		passed, arg := s.windowPassed("prev_rotated_at")
		_, err := s.db.NewUpdate().Model((*models.Session)(nil)).
			Set("last_used_at = "+s.dialect.Now).
			Set("prev_sealed = CASE WHEN "+passed+" THEN NULL ELSE prev_sealed END", arg).
			Where("id IN (?)", bun.In(ids[:n])).
			Exec(ctx)
		if err != nil {
			for _, id := range ids {
				s.touches.queue(id)
			}
			return err
		}
		ids = ids[n:]
	}
	return nil
}
