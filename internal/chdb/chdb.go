// Package chdb is a minimal binding to chDB (libchdb.so), an in-process
// ClickHouse engine, loaded at run time with purego (no cgo). Moat uses it
// only in tests, to check that its migrations and documented analyst queries
// also run on a current ClickHouse release while the local server is 18.16.
// scripts/fetch-chdb.sh fetches the library; it is never committed.
//
// chDB runs one engine per process, so at most one Conn may be open at a
// time, and all calls on it are serialized.
package chdb

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Signatures from chdb.h (CHDB_VERSION 26.7.3), the current (non-deprecated)
// connection API:
//
//	void             chdb_set_signal_handlers_enabled(int enabled);
//	const char *     chdb_version(void);
//	chdb_connection* chdb_connect(int argc, char **argv);
//	void             chdb_close_conn(chdb_connection *conn);
//	chdb_result *    chdb_query(chdb_connection conn, const char *query, const char *format);
//	char *           chdb_result_buffer(chdb_result *result);
//	size_t           chdb_result_length(chdb_result *result);
//	const char *     chdb_result_error(chdb_result *result);
//	void             chdb_destroy_query_result(chdb_result *result);
type lib struct {
	path               string
	setSignalHandlers  func(enabled int32)
	version            func() unsafe.Pointer
	connect            func(argc int32, argv unsafe.Pointer) unsafe.Pointer
	closeConn          func(conn unsafe.Pointer)
	query              func(conn unsafe.Pointer, query, format string) unsafe.Pointer
	resultBuffer       func(res unsafe.Pointer) unsafe.Pointer
	resultLength       func(res unsafe.Pointer) uintptr
	resultError        func(res unsafe.Pointer) unsafe.Pointer
	destroyQueryResult func(res unsafe.Pointer)
}

var (
	mu     sync.Mutex // guards loaded and open, and serializes every call into the library
	loaded *lib
	open   *Conn
)

// load dlopens libPath once per process. A second, different path is refused:
// a shared object this size cannot sensibly be swapped in one process.
func load(libPath string) (*lib, error) {
	if loaded != nil {
		if loaded.path != libPath {
			return nil, fmt.Errorf("chdb: %s already loaded, cannot load %s", loaded.path, libPath)
		}
		return loaded, nil
	}
	h, err := purego.Dlopen(libPath, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("chdb: load %s: %w", libPath, err)
	}
	l := &lib{path: libPath}
	for _, f := range []struct {
		name string
		fn   any
	}{
		{"chdb_set_signal_handlers_enabled", &l.setSignalHandlers},
		{"chdb_version", &l.version},
		{"chdb_connect", &l.connect},
		{"chdb_close_conn", &l.closeConn},
		{"chdb_query", &l.query},
		{"chdb_result_buffer", &l.resultBuffer},
		{"chdb_result_length", &l.resultLength},
		{"chdb_result_error", &l.resultError},
		{"chdb_destroy_query_result", &l.destroyQueryResult},
	} {
		if _, err := purego.Dlsym(h, f.name); err != nil {
			return nil, fmt.Errorf("chdb: %s: missing symbol %s: %w", libPath, f.name, err)
		}
		purego.RegisterLibFunc(f.fn, h, f.name)
	}
	// chDB otherwise installs process-wide handlers for SIGSEGV and friends,
	// which would take them away from the Go runtime.
	l.setSignalHandlers(0)
	loaded = l
	return l, nil
}

// Conn is the process's chDB session.
type Conn struct {
	lib  *lib
	conn unsafe.Pointer // chdb_connection * (pointer to the connection handle)
}

// ErrBusy is returned by Open while another Conn is still open.
var ErrBusy = errors.New("chdb: a connection is already open in this process (close it first)")

// Open loads libchdb.so from libPath (once per process) and starts a session
// whose databases live under dataDir (":memory:" when empty). args are
// further command-line arguments of the engine (clickhouse-local's), such
// as --config-file=PATH.
func Open(libPath, dataDir string, args ...string) (*Conn, error) {
	mu.Lock()
	defer mu.Unlock()
	if open != nil {
		return nil, ErrBusy
	}
	l, err := load(libPath)
	if err != nil {
		return nil, err
	}
	argl := []string{"moat"}
	if dataDir != "" {
		argl = append(argl, "--path="+dataDir)
	}
	argl = append(argl, args...)
	argv, free := cStrings(argl)
	defer free()
	c := l.connect(int32(len(argl)), argv)
	runtime.KeepAlive(argv)
	if c == nil || *(*unsafe.Pointer)(c) == nil {
		return nil, fmt.Errorf("chdb: chdb_connect(%q) failed", argl)
	}
	open = &Conn{lib: l, conn: c}
	return open, nil
}

// Version returns the engine version reported by the library.
func (c *Conn) Version() string {
	mu.Lock()
	defer mu.Unlock()
	return goString(c.lib.version())
}

// Query runs one SQL statement and returns its output in format (for
// example "TabSeparated", "CSV", "JSONEachRow"; "TabSeparated" when empty).
// A failing statement returns the engine's error text.
func (c *Conn) Query(sql, format string) ([]byte, error) {
	if format == "" {
		format = "TabSeparated"
	}
	mu.Lock()
	defer mu.Unlock()
	if c.conn == nil {
		return nil, errors.New("chdb: connection closed")
	}
	res := c.lib.query(*(*unsafe.Pointer)(c.conn), sql, format)
	if res == nil {
		return nil, errors.New("chdb: chdb_query returned no result")
	}
	defer c.lib.destroyQueryResult(res)
	if msg := goString(c.lib.resultError(res)); msg != "" {
		return nil, errors.New(msg)
	}
	n := c.lib.resultLength(res)
	buf := c.lib.resultBuffer(res)
	if n == 0 || buf == nil {
		return []byte{}, nil
	}
	return append([]byte(nil), unsafe.Slice((*byte)(buf), n)...), nil
}

// Close ends the session. Closing the last connection shuts the engine
// down; a later Open boots it again.
func (c *Conn) Close() error {
	mu.Lock()
	defer mu.Unlock()
	if c.conn == nil {
		return nil
	}
	c.lib.closeConn(c.conn)
	c.conn = nil
	if open == c {
		open = nil
	}
	return nil
}

// goString copies a NUL-terminated C string.
func goString(p unsafe.Pointer) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(p, n)) != 0 {
		n++
	}
	return string(unsafe.Slice((*byte)(p), n))
}

// cStrings builds a C-style argv (char **) in Go memory; free keeps it alive
// until called. Go's collector does not move heap objects, and the library
// does not keep argv after chdb_connect returns.
func cStrings(ss []string) (unsafe.Pointer, func()) {
	bufs := make([][]byte, len(ss))
	ptrs := make([]*byte, len(ss)+1)
	for i, s := range ss {
		bufs[i] = append([]byte(s), 0)
		ptrs[i] = &bufs[i][0]
	}
	return unsafe.Pointer(&ptrs[0]), func() { runtime.KeepAlive(bufs); runtime.KeepAlive(ptrs) }
}
