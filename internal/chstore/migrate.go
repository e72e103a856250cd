package chstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"

	"github.com/moat-dev/moat/schemas"
)

// MigrationsTable is the table, in the migrated database, that records
// which migrations were applied.
const MigrationsTable = "schema_migrations"

// statementTimeout bounds one DDL statement or query when the caller's
// context has no earlier deadline.
const statementTimeout = 60 * time.Second

// Migrate creates database if needed, then applies every migration of
// schemas.Migrations(database) that schema_migrations does not list yet,
// statement by statement, recording each version once all its statements
// succeeded. Statements are idempotent (IF NOT EXISTS), so a migration cut
// off half way runs again in full. Running Migrate again is a no-op.
func Migrate(ctx context.Context, conn driver.Conn, database string, log *slog.Logger) error {
	return MigrateCluster(ctx, conn, database, "", log)
}

// MigrateCluster is Migrate for the ClickHouse cluster named cluster: it
// applies schemas.ClusterMigrations(database, cluster), whose DDL runs ON
// CLUSTER (so every server of the cluster needs the cluster in its
// remote_servers, and ZooKeeper or Keeper), and keeps schema_migrations as
// a table replicated to every server, so any server tells what was
// applied. An empty cluster is Migrate.
//
// It refuses a database holding the other form of the schema: a
// single-server migration must never add a plain table to one server of a
// cluster, and the cluster form cannot be laid over single-server tables.
func MigrateCluster(ctx context.Context, conn driver.Conn, database, cluster string, log *slog.Logger) error {
	if database == "" {
		return fmt.Errorf("chstore: migrate: no database name")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "chstore", "database", database)
	if cluster != "" {
		log = log.With("cluster", cluster)
		// Backfills (INSERT ... SELECT) write through Distributed tables:
		// wait until every shard has its rows before recording the
		// migration.
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_distributed_sync": 1}))
	}
	migrations, err := schemas.ClusterMigrations(database, cluster)
	if err != nil {
		return fmt.Errorf("chstore: migrate %s: %w", database, err)
	}
	if err := checkLayout(ctx, conn, database, cluster); err != nil {
		return fmt.Errorf("chstore: migrate %s: %w", database, err)
	}
	for _, stmt := range PrepareStatements(database, cluster) {
		if err := execStatement(ctx, conn, stmt); err != nil {
			return fmt.Errorf("chstore: migrate %s: prepare: %w", database, err)
		}
	}
	applied, err := Applied(ctx, conn, database)
	if err != nil {
		return fmt.Errorf("chstore: migrate %s: %w", database, err)
	}
	done := make(map[int]bool, len(applied))
	for _, v := range applied {
		done[v] = true
	}
	db := schemas.QuoteIdent(database)
	n := 0
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		begin := time.Now()
		for i, stmt := range m.Statements {
			if err := execStatement(ctx, conn, stmt); err != nil {
				return fmt.Errorf("chstore: migrate %s: migration %04d_%s statement %d (%s): %w",
					database, m.Version, m.Name, i+1, firstLine(stmt), err)
			}
		}
		if err := record(ctx, conn, db, m); err != nil {
			return fmt.Errorf("chstore: migrate %s: record migration %04d_%s: %w", database, m.Version, m.Name, err)
		}
		n++
		log.Info("applied migration", "version", m.Version, "name", m.Name,
			"statements", len(m.Statements), "took", time.Since(begin).Round(time.Millisecond))
	}
	if n == 0 {
		log.Debug("schema up to date", "migrations", len(migrations))
	}
	return nil
}

// PrepareStatements returns the statements Migrate (cluster "") or
// MigrateCluster runs before the migrations: they create the database and
// schema_migrations. In a cluster, schema_migrations has one replica on
// every server (one ZooKeeper path for the whole cluster, replica names
// unique across it): a migration recorded through any server is seen by
// all.
func PrepareStatements(database, cluster string) []string {
	db := schemas.QuoteIdent(database)
	const columns = ` (
    version    UInt32,
    name       String,
    applied_at DateTime
)`
	if cluster == "" {
		return []string{
			"CREATE DATABASE IF NOT EXISTS " + db,
			"CREATE TABLE IF NOT EXISTS " + db + "." + MigrationsTable + columns + ` ENGINE = MergeTree() ORDER BY version`,
		}
	}
	on := " ON CLUSTER " + schemas.QuoteIdent(cluster)
	engine, _ := schemas.ReplicatedEngine("MergeTree", "", schemas.ZKPathAllNodes(database, MigrationsTable), schemas.ReplicaAllNodes)
	return []string{
		"CREATE DATABASE IF NOT EXISTS " + db + on,
		"CREATE TABLE IF NOT EXISTS " + db + "." + MigrationsTable + on + columns + " ENGINE = " + engine + " ORDER BY version",
	}
}

// checkLayout refuses to migrate a database whose schema tables are of the
// other form: Distributed tables without a cluster, anything else with
// one. A database without them (new, or before its first migration) passes.
func checkLayout(ctx context.Context, conn driver.Conn, database, cluster string) error {
	tables, err := schemas.SchemaTables()
	if err != nil {
		return err
	}
	qctx, cancel := withDefaultTimeout(ctx, statementTimeout)
	defer cancel()
	rows, err := conn.Query(qctx, "SELECT name, engine FROM system.tables WHERE database = ? AND has(?, name) ORDER BY name", database, tables)
	if err != nil {
		return fmt.Errorf("look up the schema's tables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, engine string
		if err := rows.Scan(&name, &engine); err != nil {
			return fmt.Errorf("look up the schema's tables: %w", err)
		}
		switch dist := engine == "Distributed"; {
		case cluster == "" && dist:
			return fmt.Errorf("%w: %s.%s is a Distributed table: the database holds the cluster form of the schema; give the cluster name (--clickhouse-cluster)", ErrLayout, database, name)
		case cluster != "" && !dist:
			return fmt.Errorf("%w: %s.%s is a %s table, not Distributed: the database holds the single-server form of the schema, which the cluster form cannot be laid over (see docs/operations.md, ClickHouse cluster)", ErrLayout, database, name, engine)
		}
	}
	return rows.Err()
}

// ErrLayout is returned (wrapped) by Migrate and MigrateCluster for a
// database that holds the other form of the schema.
var ErrLayout = errors.New("schema form mismatch")

// execStatement runs one DDL statement of a migration; tests of the
// cluster form replace it to emulate ON CLUSTER without ZooKeeper.
var execStatement = exec

// Applied returns the versions recorded in database's schema_migrations,
// in ascending order. The table must exist (Migrate creates it).
func Applied(ctx context.Context, conn driver.Conn, database string) ([]int, error) {
	ctx, cancel := withDefaultTimeout(ctx, statementTimeout)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM "+schemas.QuoteIdent(database)+"."+MigrationsTable+" ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("chstore: list applied migrations of %s: %w", database, err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("chstore: list applied migrations of %s: scan: %w", database, err)
		}
		out = append(out, int(v))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chstore: list applied migrations of %s: %w", database, err)
	}
	return out, nil
}

func exec(ctx context.Context, conn driver.Conn, stmt string) error {
	ctx, cancel := withDefaultTimeout(ctx, statementTimeout)
	defer cancel()
	err := conn.Exec(ctx, stmt)
	if err != nil && addsColumn(stmt) && isDuplicateColumn(err) {
		// ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: a migration
		// that adds one column per statement is idempotent this way.
		return nil
	}
	return err
}

// addsColumn reports whether stmt is an ALTER TABLE adding exactly one
// column (the only kind of ALTER a migration may repeat).
func addsColumn(stmt string) bool {
	u := strings.ToUpper(stmt)
	return strings.HasPrefix(strings.TrimSpace(u), "ALTER TABLE") && strings.Count(u, "ADD COLUMN") == 1
}

// isDuplicateColumn reports that the column exists already: 18.16 answers
// ILLEGAL_COLUMN (44), current releases DUPLICATE_COLUMN (15); the chDB
// portability test (internal/chdb) checks the latter.
func isDuplicateColumn(err error) bool {
	var ex *proto.Exception
	return errors.As(err, &ex) && IsDuplicateColumnCode(int(ex.Code))
}

// IsDuplicateColumnCode reports whether a ClickHouse error code means "the
// column exists already" on some supported version.
func IsDuplicateColumnCode(code int) bool { return code == 44 || code == 15 }

// record inserts m's row into schema_migrations. Through PrepareBatch with an
// explicit column list: Exec("INSERT ... VALUES") hangs on 18.16.
func record(ctx context.Context, conn driver.Conn, db string, m schemas.Migration) error {
	ctx, cancel := withDefaultTimeout(ctx, statementTimeout)
	defer cancel()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+MigrationsTable+" (version, name, applied_at)")
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	defer batch.Abort() //nolint:errcheck // no-op after Send
	if n := len(batch.Columns()); n != 3 {
		return fmt.Errorf("prepare insert: server expects %d columns, want 3", n)
	}
	if err := batch.Append(uint32(m.Version), m.Name, time.Now().UTC().Truncate(time.Second)); err != nil {
		return fmt.Errorf("append: %w", err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

func firstLine(stmt string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}
