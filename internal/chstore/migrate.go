package chstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

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
	if database == "" {
		return fmt.Errorf("chstore: migrate: no database name")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "chstore", "database", database)
	db := schemas.QuoteIdent(database)
	for _, stmt := range []string{
		"CREATE DATABASE IF NOT EXISTS " + db,
		"CREATE TABLE IF NOT EXISTS " + db + "." + MigrationsTable + ` (
    version    UInt32,
    name       String,
    applied_at DateTime
) ENGINE = MergeTree() ORDER BY version`,
	} {
		if err := exec(ctx, conn, stmt); err != nil {
			return fmt.Errorf("chstore: migrate %s: prepare: %w", database, err)
		}
	}
	migrations, err := schemas.Migrations(database)
	if err != nil {
		return fmt.Errorf("chstore: migrate %s: %w", database, err)
	}
	applied, err := Applied(ctx, conn, database)
	if err != nil {
		return fmt.Errorf("chstore: migrate %s: %w", database, err)
	}
	done := make(map[int]bool, len(applied))
	for _, v := range applied {
		done[v] = true
	}
	n := 0
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		begin := time.Now()
		for i, stmt := range m.Statements {
			if err := exec(ctx, conn, stmt); err != nil {
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
