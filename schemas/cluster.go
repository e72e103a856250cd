package schemas

import (
	"fmt"
	"regexp"
	"strings"
)

// The cluster form of the schema.
//
// ClusterMigrations rewrites the single-node migrations (the files in
// clickhouse/, which stay the one source of truth) for a sharded and
// replicated ClickHouse cluster, statement by statement, with the rules
// below. A statement no rule covers is an error, never passed through: a
// new migration that the rules cannot place must get a rule (and a test)
// before it can ship.
//
//   - CREATE TABLE IF NOT EXISTS {db}.T (...) ENGINE = E(args) ... becomes
//     two statements: the shard-local table {db}.T_local, created ON CLUSTER
//     with the Replicated variant of E
//     (ReplicatedE('/clickhouse/tables/{shard}/<database>/T_local',
//     '{replica}', args), every other clause kept), then {db}.T, the
//     Distributed table the application reads and writes, ON CLUSTER AS
//     the local table and sharded by ShardingKey(T). E must be a MergeTree
//     engine; the {shard} and {replica} macros come from each server's
//     config.
//   - CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.V TO {db}.T AS SELECT ...
//     is created ON CLUSTER; its target and every table it reads become the
//     local tables, so each shard folds its own inserts into its own
//     aggregates. A materialized view must have a TO table.
//   - CREATE VIEW IF NOT EXISTS {db}.V AS SELECT ... is created ON CLUSTER
//     unchanged: it reads the Distributed tables, so it sees every shard.
//   - ALTER TABLE {db}.T ADD|MODIFY COLUMN ... runs ON CLUSTER on T_local,
//     then on T (a Distributed table has its own column list); DROP COLUMN
//     runs on T first. One column per statement, as for a single node.
//   - INSERT INTO {db}.T (...) SELECT ... (a backfill) is kept as it is: it
//     runs once, on the server the migration runs on, and reads and writes
//     through the Distributed tables, so the rows land on their shards.
//
// Every table is sharded by cityHash64(app_id, user_id) unless
// clusterShardingKeys says otherwise: one user's rows, and every aggregate
// a materialized view folds from them, live on one shard. That keeps FINAL
// and per-user argMax, min and max correct, since ClickHouse applies FINAL
// and merges parts within a shard.

// LocalSuffix names the shard-local table behind each Distributed table of
// the cluster form: events_local behind events.
const LocalSuffix = "_local"

// clusterShardingKeys are the sharding keys of the tables that are not
// sharded by user.
var clusterShardingKeys = map[string]string{
	// Delivery attempts are independent facts, never folded or
	// deduplicated: spread evenly.
	"webhook_deliveries": "rand()",
}

// userShardingKey shards a table by app and user.
const userShardingKey = "cityHash64(app_id, user_id)"

// zkTablesRoot is where the replicated tables keep their ZooKeeper (or
// Keeper) state: <root>{shard}/<database>/<table>_local for a shard-local
// table, one replica set per shard. The database name is written out, not
// left to a {database} macro, so the path never depends on how a server
// expands macros or on a later RENAME.
const zkTablesRoot = "/clickhouse/tables/"

// ZKPath returns the ZooKeeper path of the shard-local table local of
// database.
func ZKPath(database, local string) string {
	return zkTablesRoot + "{shard}/" + database + "/" + local
}

// ZKPathAllNodes returns the ZooKeeper path of a table of database that
// has one replica on every server of the cluster (whatever its shard), as
// the migrations bookkeeping table has. Its replicas must be named
// ReplicaAllNodes.
func ZKPathAllNodes(database, table string) string {
	return zkTablesRoot + "all/" + database + "/" + table
}

// ReplicaAllNodes is the replica name of a table replicated to every
// server: {replica} is unique within a shard only.
const ReplicaAllNodes = "{shard}-{replica}"

// ClusterMigrations returns the migrations of Migrations(database) in the
// form for the ClickHouse cluster named cluster (the name of a
// <remote_servers> entry on every server). An empty cluster returns
// Migrations(database) itself, unchanged.
func ClusterMigrations(database, cluster string) ([]Migration, error) {
	if cluster == "" {
		return Migrations(database)
	}
	if err := ValidClusterName(cluster); err != nil {
		return nil, err
	}
	ms, err := rawMigrations()
	if err != nil {
		return nil, err
	}
	r := newClusterRewriter(database, cluster)
	for i, m := range ms {
		var out []string
		for j, stmt := range m.Statements {
			got, err := r.rewrite(stmt)
			if err != nil {
				return nil, fmt.Errorf("schemas: cluster form of migration %04d_%s statement %d: %w", m.Version, m.Name, j+1, err)
			}
			out = append(out, got...)
		}
		ms[i].Statements = substituteDB(out, database)
	}
	return ms, nil
}

// SchemaTables returns the tables the migrations create (not the views),
// in the order they are created. In the cluster form each is a Distributed
// table over LocalTable(name).
func SchemaTables() ([]string, error) {
	ms, err := rawMigrations()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		for _, stmt := range m.Statements {
			if sm := reCreateTable.FindStringSubmatch(stmt); sm != nil {
				out = append(out, sm[1])
			}
		}
	}
	return out, nil
}

// LocalTable returns the name of the shard-local table behind table in the
// cluster form.
func LocalTable(table string) string { return table + LocalSuffix }

// MutationTarget returns what an ALTER TABLE ... DELETE (or UPDATE) of
// table names: `db`.table on a single server, and `db`.table_local ON
// CLUSTER `cluster` in the cluster form, where a mutation of the
// Distributed table is refused ("Mutations are not supported by storage
// Distributed") and each shard must mutate its own local table. Only for
// the tables of SchemaTables.
func MutationTarget(database, cluster, table string) string {
	if cluster == "" {
		return QuoteIdent(database) + "." + table
	}
	return QuoteIdent(database) + "." + LocalTable(table) + " ON CLUSTER " + QuoteIdent(cluster)
}

// ShardingKey returns the sharding key of table's Distributed table given
// its columns: clusterShardingKeys, else cityHash64(app_id, user_id) when
// it has both columns.
func ShardingKey(table string, columns []string) (string, error) {
	if k, ok := clusterShardingKeys[table]; ok {
		return k, nil
	}
	var app, user bool
	for _, c := range columns {
		app = app || c == "app_id"
		user = user || c == "user_id"
	}
	if !app || !user {
		return "", fmt.Errorf("table %s has no app_id and user_id columns to shard by: give it a key in clusterShardingKeys (schemas/cluster.go)", table)
	}
	return userShardingKey, nil
}

var reClusterName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

// ValidClusterName checks a cluster name: what a <remote_servers> element
// can be called (letters, digits, '_', '-', '.'; not starting with a
// digit, '-' or '.').
func ValidClusterName(cluster string) error {
	if !reClusterName.MatchString(cluster) {
		return fmt.Errorf("schemas: bad ClickHouse cluster name %q: want letters, digits, '_', '-' or '.', starting with a letter or '_'", cluster)
	}
	return nil
}

// QuoteString quotes s as a ClickHouse string literal.
func QuoteString(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// ReplicatedEngine returns the Replicated variant of a MergeTree-family
// engine call: engine MergeTree family name (ReplacingMergeTree, ...),
// args its arguments as written ("" for none), zkPath and replica the
// first two arguments of the replicated engine (macros such as {shard} and
// {replica} are expanded by each server).
func ReplicatedEngine(engine, args, zkPath, replica string) (string, error) {
	if !reMergeTreeEngine.MatchString(engine) {
		return "", fmt.Errorf("engine %s has no Replicated variant (want a MergeTree engine)", engine)
	}
	out := "Replicated" + engine + "(" + QuoteString(zkPath) + ", " + QuoteString(replica)
	if a := strings.TrimSpace(args); a != "" {
		out += ", " + a
	}
	return out + ")", nil
}

var (
	reCreateTable = regexp.MustCompile(`(?is)^CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS\s+\{db\}\.(\w+)\s*\(`)
	reCreateMV    = regexp.MustCompile(`(?is)^CREATE\s+MATERIALIZED\s+VIEW\s+IF\s+NOT\s+EXISTS\s+\{db\}\.(\w+)\s+TO\s+\{db\}\.(\w+)\s+(AS\s+SELECT\b.*)$`)
	reCreateView  = regexp.MustCompile(`(?is)^CREATE\s+VIEW\s+IF\s+NOT\s+EXISTS\s+\{db\}\.(\w+)\s+(AS\s+SELECT\b.*)$`)
	reAlterColumn = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+\{db\}\.(\w+)\s+((ADD|MODIFY|DROP)\s+COLUMN\s+.*)$`)
	reInsert      = regexp.MustCompile(`(?is)^INSERT\s+INTO\s+\{db\}\.(\w+)\s*\([^)]*\)\s*SELECT\b`)
	reEngine      = regexp.MustCompile(`(?is)^\s*ENGINE\s*=\s*(\w+)\s*\(`)
	reOrderBy     = regexp.MustCompile(`(?i)\bORDER\s+BY\b`)
	reTableRef    = regexp.MustCompile(`\{db\}\.(\w+)`)
	// The MergeTree family, without Graphite (it needs a server config
	// section of its own).
	reMergeTreeEngine = regexp.MustCompile(`^(|Replacing|Aggregating|Summing|Collapsing|VersionedCollapsing)MergeTree$`)
)

// clusterRewriter rewrites the raw statements ({db} placeholders) of the
// migrations in order, remembering the tables and views created so far.
type clusterRewriter struct {
	database, cluster string
	onCluster         string // " ON CLUSTER `name`"
	tables            map[string]bool
	views             map[string]bool
}

func newClusterRewriter(database, cluster string) *clusterRewriter {
	return &clusterRewriter{
		database:  database,
		cluster:   cluster,
		onCluster: " ON CLUSTER " + QuoteIdent(cluster),
		tables:    map[string]bool{},
		views:     map[string]bool{},
	}
}

func (r *clusterRewriter) rewrite(stmt string) ([]string, error) {
	stmt = strings.TrimSpace(stmt)
	switch {
	case reCreateTable.MatchString(stmt):
		return r.createTable(stmt)
	case reCreateMV.MatchString(stmt):
		return r.createMaterializedView(stmt)
	case reCreateView.MatchString(stmt):
		m := reCreateView.FindStringSubmatch(stmt)
		if err := r.declare(m[1], r.views); err != nil {
			return nil, err
		}
		return []string{"CREATE VIEW IF NOT EXISTS {db}." + m[1] + r.onCluster + " " + m[2]}, nil
	case reAlterColumn.MatchString(stmt):
		return r.alterColumn(stmt)
	case reInsert.MatchString(stmt):
		m := reInsert.FindStringSubmatch(stmt)
		if !r.tables[m[1]] {
			return nil, fmt.Errorf("INSERT into %s, which no earlier migration created as a table", m[1])
		}
		return []string{stmt}, nil
	}
	return nil, fmt.Errorf("no cluster rule for this statement (see schemas/cluster.go): %s", firstLineOf(stmt))
}

// declare records a new object name, refusing names the cluster form
// cannot hold.
func (r *clusterRewriter) declare(name string, kind map[string]bool) error {
	if strings.HasSuffix(name, LocalSuffix) {
		return fmt.Errorf("%s: names ending in %s are reserved for the cluster form's local tables", name, LocalSuffix)
	}
	if r.tables[name] || r.views[name] {
		return fmt.Errorf("%s is created twice", name)
	}
	kind[name] = true
	return nil
}

func (r *clusterRewriter) createTable(stmt string) ([]string, error) {
	loc := reCreateTable.FindStringSubmatchIndex(stmt)
	name := stmt[loc[2]:loc[3]]
	open := loc[1] - 1 // the '(' of the column list
	end, err := matchParen(stmt, open)
	if err != nil {
		return nil, fmt.Errorf("table %s: column list: %w", name, err)
	}
	columns := stmt[open : end+1]
	rest := stmt[end+1:]
	em := reEngine.FindStringSubmatchIndex(rest)
	if em == nil {
		return nil, fmt.Errorf("table %s: no ENGINE = Name(...) right after the column list", name)
	}
	engine := rest[em[2]:em[3]]
	argsEnd, err := matchParen(rest, em[1]-1)
	if err != nil {
		return nil, fmt.Errorf("table %s: engine arguments: %w", name, err)
	}
	args := rest[em[1]:argsEnd]
	tail := rest[argsEnd+1:]
	if !reOrderBy.MatchString(tail) {
		return nil, fmt.Errorf("table %s: the cluster form needs an ORDER BY clause (not the old MergeTree(date, key, granularity) syntax)", name)
	}
	if err := r.declare(name, r.tables); err != nil {
		return nil, err
	}
	key, err := ShardingKey(name, columnNames(columns[1:len(columns)-1]))
	if err != nil {
		return nil, err
	}
	local := LocalTable(name)
	repl, err := ReplicatedEngine(engine, args, ZKPath(r.database, local), "{replica}")
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", name, err)
	}
	return []string{
		"CREATE TABLE IF NOT EXISTS {db}." + local + r.onCluster + "\n" + columns + "\nENGINE = " + repl + tail,
		"CREATE TABLE IF NOT EXISTS {db}." + name + r.onCluster + " AS {db}." + local +
			"\nENGINE = Distributed(" + QuoteString(r.cluster) + ", " + QuoteString(r.database) + ", " + QuoteString(local) + ", " + key + ")",
	}, nil
}

func (r *clusterRewriter) createMaterializedView(stmt string) ([]string, error) {
	m := reCreateMV.FindStringSubmatch(stmt)
	name, target, body := m[1], m[2], m[3]
	if !r.tables[target] {
		return nil, fmt.Errorf("materialized view %s writes to %s, which no earlier migration created as a table", name, target)
	}
	var bad []string
	body = reTableRef.ReplaceAllStringFunc(body, func(ref string) string {
		t := strings.TrimPrefix(ref, "{db}.")
		if !r.tables[t] {
			bad = append(bad, t)
			return ref
		}
		return "{db}." + LocalTable(t)
	})
	if len(bad) > 0 {
		return nil, fmt.Errorf("materialized view %s reads %s, not a table of the schema (a materialized view is fed by inserts into a table)", name, strings.Join(bad, ", "))
	}
	if err := r.declare(name, r.views); err != nil {
		return nil, err
	}
	return []string{"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}." + name + r.onCluster + " TO {db}." + LocalTable(target) + " " + body}, nil
}

func (r *clusterRewriter) alterColumn(stmt string) ([]string, error) {
	m := reAlterColumn.FindStringSubmatch(stmt)
	table, action, verb := m[1], m[2], strings.ToUpper(m[3])
	if !r.tables[table] {
		return nil, fmt.Errorf("ALTER of %s, which no earlier migration created as a table", table)
	}
	if parts := splitTopLevel(action, ','); len(parts) != 1 {
		return nil, fmt.Errorf("ALTER TABLE %s: one column action per statement", table)
	}
	local := "ALTER TABLE {db}." + LocalTable(table) + r.onCluster + " " + action
	dist := "ALTER TABLE {db}." + table + r.onCluster + " " + action
	if verb == "DROP" {
		// The Distributed table must stop naming the column before the
		// local tables lose it.
		return []string{dist, local}, nil
	}
	return []string{local, dist}, nil
}

// columnNames returns the column names of a column list (without its
// parentheses).
func columnNames(list string) []string {
	var out []string
	for _, def := range splitTopLevel(list, ',') {
		f := strings.Fields(def)
		if len(f) > 0 {
			out = append(out, strings.Trim(f[0], "`\""))
		}
	}
	return out
}

// matchParen returns the index of the parenthesis closing the one at open,
// skipping quoted strings and identifiers.
func matchParen(s string, open int) (int, error) {
	if open < 0 || open >= len(s) || s[open] != '(' {
		return 0, fmt.Errorf("no '(' at %d", open)
	}
	depth := 0
	for i := open; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '`', '"':
			j, err := skipQuoted(s, i)
			if err != nil {
				return 0, err
			}
			i = j
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i, nil
			}
		}
	}
	return 0, fmt.Errorf("unbalanced parentheses")
}

// splitTopLevel splits s on sep outside parentheses, brackets and quotes.
func splitTopLevel(s string, sep byte) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '`' || c == '"':
			j, err := skipQuoted(s, i)
			if err != nil {
				return append(out, s[start:])
			}
			i = j
		case c == '(' || c == '[':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == sep && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// skipQuoted returns the index of the quote closing the one at i
// (backslash escapes).
func skipQuoted(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j, nil
		}
	}
	return 0, fmt.Errorf("unterminated %c", q)
}

func firstLineOf(stmt string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(stmt), "\n")
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return s
}

var reReplicatedCall = regexp.MustCompile(`Replicated(\w*MergeTree)\('(?:[^'\\]|\\.)*',\s*'(?:[^'\\]|\\.)*'(?:,\s*)?`)

// WithoutZooKeeper returns a statement of the cluster form as one server
// without ZooKeeper can run it: the ON CLUSTER clause dropped and a
// Replicated engine made plain (ReplicatedReplacingMergeTree('/p', 'r', v)
// becomes ReplacingMergeTree(v)). Tests run the cluster form this way, on
// every server of a test cluster, to emulate ON CLUSTER: they have no
// ZooKeeper, which ON CLUSTER and replicated tables need.
func WithoutZooKeeper(stmt, cluster string) string {
	stmt = strings.ReplaceAll(stmt, " ON CLUSTER "+QuoteIdent(cluster), "")
	return reReplicatedCall.ReplaceAllString(stmt, "$1(")
}
