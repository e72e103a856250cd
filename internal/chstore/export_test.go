package chstore

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Exec runs one statement as Migrate does (a repeated ADD COLUMN passes).
var Exec = exec

// SetExecStatement makes Migrate run its statements through f until
// restore is called: the cluster test emulates ON CLUSTER with it.
func SetExecStatement(f func(ctx context.Context, conn driver.Conn, stmt string) error) (restore func()) {
	old := execStatement
	execStatement = f
	return func() { execStatement = old }
}
