package schemas

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

//go:embed clickhouse/*.sql
var migrationFS embed.FS

// Migration is one versioned ClickHouse schema change. Statements are
// applied in order; each must be idempotent (IF NOT EXISTS) so that a
// migration interrupted half way can run again.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations returns the embedded migrations in version order, with every
// `{db}` placeholder replaced by the quoted database name.
//
// The SQL stays inside what ClickHouse 18.16 and current releases both
// accept: no DateTime64, Map, JSON, TTL or async inserts.
func Migrations(database string) ([]Migration, error) {
	out, err := rawMigrations()
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Statements = substituteDB(out[i].Statements, database)
	}
	return out, nil
}

// substituteDB replaces every `{db}` placeholder in stmts, in place, by the
// quoted database name.
func substituteDB(stmts []string, database string) []string {
	for i, s := range stmts {
		stmts[i] = strings.ReplaceAll(s, "{db}", QuoteIdent(database))
	}
	return stmts
}

// rawMigrations returns the embedded migrations in version order, their
// statements still holding the `{db}` placeholder.
func rawMigrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFS, "clickhouse")
	if err != nil {
		return nil, fmt.Errorf("schemas: read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		if !ok {
			return nil, fmt.Errorf("schemas: migration %q: want NNNN_name.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("schemas: migration %q: bad version: %w", name, err)
		}
		body, err := migrationFS.ReadFile("clickhouse/" + name)
		if err != nil {
			return nil, fmt.Errorf("schemas: read migration %q: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: rest, Statements: SplitStatements(string(body))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("schemas: two migrations with version %d", out[i].Version)
		}
	}
	return out, nil
}

// SplitStatements splits SQL text on ';' at line ends and drops comment-only
// lines. Migrations never put ';' inside string literals.
func SplitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, s)
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// QuoteIdent quotes a ClickHouse identifier with backquotes.
func QuoteIdent(name string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(name, `\`, `\\`), "`", "\\`") + "`"
}
