package chtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/moat-dev/moat/internal/chserver"
	"github.com/moat-dev/moat/internal/chstore"
	"github.com/moat-dev/moat/schemas"
)

// CodeNoDDLWorker is the error code ClickHouse (18.16 and current
// releases) answers an ON CLUSTER query with when it has no distributed
// DDL queue (no ZooKeeper): the query parsed, named a known cluster and
// passed the distributed DDL checks (for ALTER, that its command may run
// ON CLUSTER) before it was refused.
const CodeNoDDLWorker = 49

// ExceptionCode returns the ClickHouse error code of err (0 for none).
func ExceptionCode(err error) int {
	var ex *proto.Exception
	if errors.As(err, &ex) {
		return int(ex.Code)
	}
	return 0
}

// Cluster is a ClickHouse cluster of local servers started for one test:
// one shard per server, one replica each, and no ZooKeeper. So it has no
// distributed DDL queue and no replicated tables: DDLConn emulates the
// queue, and the cluster form's replicated engines are made plain
// (schemas.WithoutZooKeeper).
type Cluster struct {
	// Name is the cluster's name in every server's remote_servers.
	Name string
	// Addrs are the servers' native addresses, shard 1 first.
	Addrs []string

	t         testing.TB
	onCluster string
	mu        sync.Mutex
	ddl       []string
}

// NewCluster starts shards local servers forming the cluster name, shard
// i+1 on server i, and stops them when the test ends. It skips the test
// without ClickHouse, as Addr does.
func NewCluster(t testing.TB, name string, shards int) *Cluster {
	t.Helper()
	Addr(t) // skips without ClickHouse (fails under CI)
	log := logger()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(shards+1)*chserver.StartTimeout)
	defer cancel()
	var servers []*chserver.Server
	for range shards {
		s, err := chserver.Start(ctx, chserver.Config{Dir: t.TempDir(), Logger: log})
		if err != nil {
			t.Fatalf("chtest: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.Stop(ctx); err != nil {
				t.Errorf("chtest: stop: %v", err)
			}
		})
		servers = append(servers, s)
	}
	var addrs []string
	for _, s := range servers {
		addrs = append(addrs, s.Addr())
	}
	// The servers learn each other's ports once all run: restart them
	// with the cluster.
	for i, s := range servers {
		s.SetCluster(&chserver.Cluster{Name: name, Shards: addrs, Shard: fmt.Sprintf("%02d", i+1), Replica: "r1"})
		if err := s.Stop(ctx); err != nil {
			t.Fatalf("chtest: %v", err)
		}
		if err := s.Start(ctx); err != nil {
			t.Fatalf("chtest: %v", err)
		}
	}
	return &Cluster{Name: name, Addrs: addrs, t: t, onCluster: " ON CLUSTER " + schemas.QuoteIdent(name)}
}

// Open opens a connection to server i with database as its default
// database ("" for default), closed when the test ends.
func (c *Cluster) Open(i int, database string) driver.Conn {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chstore.Open(ctx, chstore.Options{Addr: c.Addrs[i], Database: database, Logger: logger()})
	if err != nil {
		c.t.Fatalf("chtest: %v", err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return conn
}

// DDLConn returns a connection to server 1 (default database database)
// that runs every statement holding ON CLUSTER <Name> as the distributed
// DDL queue would, with what the test cluster lacks made explicit:
//
//  1. the statement as given runs on server 1, which must refuse it only
//     for want of the DDL queue (CodeNoDDLWorker): it parsed, the cluster
//     is known and, for an ALTER, its command may run ON CLUSTER;
//  2. then schemas.WithoutZooKeeper of it (no ON CLUSTER, plain engines)
//     runs on every server, in shard order, before Exec returns, as the
//     queue runs it on every host before an ON CLUSTER query answers.
//
// Every other call (queries, inserts, statements without ON CLUSTER) goes
// to server 1 unchanged. A statement refused otherwise fails the test and
// Exec returns the error. DDL lists the statements emulated.
//
// What the emulation cannot show: the queue itself, replicated tables
// (ZooKeeper), and so a mutation of a ReplicatedMergeTree table, which one
// replica of each shard runs and the others copy.
func (c *Cluster) DDLConn(database string) driver.Conn {
	c.t.Helper()
	nodes := make([]driver.Conn, len(c.Addrs))
	for i := range c.Addrs {
		nodes[i] = c.Open(i, database)
	}
	return &ddlConn{Conn: nodes[0], c: c, nodes: nodes}
}

// DDL returns the ON CLUSTER statements DDLConn ran so far, as given.
func (c *Cluster) DDL() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ddl...)
}

// NewDatabase creates a database test_cluster_<random hex> in the cluster
// form through chstore.MigrateCluster over DDLConn, and returns a DDLConn
// whose default database it is, with the name. When the test ends the
// database is dropped on every server.
func (c *Cluster) NewDatabase() (driver.Conn, string) {
	c.t.Helper()
	name := "test_cluster_" + randomHex(8)
	c.t.Cleanup(func() {
		for _, a := range c.Addrs {
			dropDatabase(c.t, a, name)
		}
	})
	admin := c.DDLConn("")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := chstore.MigrateCluster(ctx, admin, name, c.Name, logger()); err != nil {
		c.t.Fatalf("chtest: %v", err)
	}
	return c.DDLConn(name), name
}

type ddlConn struct {
	driver.Conn // server 1
	c           *Cluster
	nodes       []driver.Conn
}

func (d *ddlConn) Exec(ctx context.Context, query string, args ...any) error {
	if !strings.Contains(query, d.c.onCluster) {
		return d.Conn.Exec(ctx, query, args...)
	}
	d.c.mu.Lock()
	d.c.ddl = append(d.c.ddl, query)
	d.c.mu.Unlock()
	if err := d.Conn.Exec(ctx, query, args...); ExceptionCode(err) != CodeNoDDLWorker {
		err = fmt.Errorf("chtest: as given: %v, want code %d (parsed, no DDL queue without ZooKeeper)\nSQL:\n%s", err, CodeNoDDLWorker, query)
		d.c.t.Error(err)
		return err
	}
	plain := schemas.WithoutZooKeeper(query, d.c.Name)
	for i, n := range d.nodes {
		if err := n.Exec(ctx, plain, args...); err != nil {
			return fmt.Errorf("server %d: %w", i+1, err)
		}
	}
	return nil
}
