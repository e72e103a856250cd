package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TxnProducer commits batches of records, each in one Kafka transaction,
// one batch at a time: a read-committed consumer sees all of a batch or
// none of it. The lists writer (a list change with its notification) and
// the privacy writer (registry records with their commands) use it.
type TxnProducer struct {
	cfg       Config
	name      string
	log       *slog.Logger
	txnID     string
	timeout   time.Duration
	partition kgo.Partitioner

	mu sync.Mutex
	cl *kgo.Client // nil after a failure: reconnected by the next Commit
}

// NewTxnProducer connects a transactional producer named name (the prefix
// of its errors and of its transactional id, random per process: it only
// produces, so no zombie needs fencing). A Commit fails after timeout
// (default 5 s) when the brokers do not answer; part places the records.
func NewTxnProducer(cfg Config, name string, timeout time.Duration, part kgo.Partitioner, log *slog.Logger) (*TxnProducer, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("%s: transactional id: %w", name, err)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	p := &TxnProducer{cfg: cfg, name: name, log: log.With("component", name+"-writer"),
		txnID: "moat-" + name + "-" + hex.EncodeToString(b), timeout: timeout, partition: part}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.client(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *TxnProducer) client() (*kgo.Client, error) {
	if p.cl != nil {
		return p.cl, nil
	}
	cl, err := kgo.NewClient(append(ClientOpts(p.cfg, p.log, "moat-"+p.name),
		kgo.TransactionalID(p.txnID),
		kgo.TransactionTimeout(10*time.Second),
		// franz-go refuses a record timeout under 1 s; Commit's context
		// still bounds a call by p.timeout.
		kgo.RecordDeliveryTimeout(max(p.timeout, time.Second)),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(p.partition),
	)...)
	if err != nil {
		return nil, fmt.Errorf("%s: create producer: %w", p.name, err)
	}
	p.cl = cl
	return cl, nil
}

// Commit produces recs in one transaction and commits it. An error means
// the transaction was not committed, or that its outcome is unknown.
func (p *TxnProducer) Commit(ctx context.Context, recs []*kgo.Record) (kgo.ProduceResults, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cl, err := p.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		p.drop()
		return nil, fmt.Errorf("%s: begin transaction: %w", p.name, err)
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		p.abort(cl)
		return nil, fmt.Errorf("%s: produce: %w", p.name, err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		p.abort(cl)
		return nil, fmt.Errorf("%s: commit: %w", p.name, err)
	}
	return res, nil
}

// abort ends a failed transaction; when even that fails the client is
// dropped, and the next Commit starts a new one, which fences this one's
// transaction with the same transactional id.
func (p *TxnProducer) abort(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	err := cl.AbortBufferedRecords(ctx)
	if err == nil {
		err = cl.EndTransaction(ctx, kgo.TryAbort)
	}
	if err != nil && !errors.Is(err, kgo.ErrClientClosed) {
		p.log.Warn("abort of a failed transaction failed; reconnecting", "err", err)
		p.drop()
	}
}

func (p *TxnProducer) drop() {
	if p.cl != nil {
		p.cl.Close()
		p.cl = nil
	}
}

// Close closes the producer.
func (p *TxnProducer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drop()
}
