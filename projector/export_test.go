package projector

import "context"

// PendingMutations counts the unfinished mutations an erasure waits for
// (awaitMutations).
func (w *Worker) PendingMutations(ctx context.Context) (uint64, error) {
	return w.pendingMutations(ctx)
}
