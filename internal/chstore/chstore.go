// Package chstore opens connections to ClickHouse and applies Moat's schema
// migrations (schemas.Migrations).
//
// Connections use the native protocol only: the HTTP interface of
// ClickHouse 18.16 does not work with clickhouse-go v2. Callers must keep to
// what 18.16 accepts through the driver: inserts go through PrepareBatch
// with an explicit column list (never Exec("INSERT ... VALUES"), which hangs
// on 18.16), and every call carries a context with a deadline.
package chstore

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Default timeouts.
const (
	DefaultDialTimeout = 5 * time.Second
	// DefaultReadTimeout bounds one read from the server; queries that may
	// run longer should still pass a context deadline.
	DefaultReadTimeout = 60 * time.Second
	// pingTimeout bounds Open's ping when ctx has no earlier deadline.
	pingTimeout = 10 * time.Second
)

// Options says where and how to connect.
type Options struct {
	// Addr is host:port of the native protocol (e.g. 127.0.0.1:9000).
	Addr string
	// Database is the default database of the connection ("" = default).
	Database string
	// Username and Password; Username "" means "default".
	Username, Password string
	// DialTimeout (default DefaultDialTimeout).
	DialTimeout time.Duration
	// Logger receives the driver's warnings and errors (default
	// slog.Default()); see DriverLogger.
	Logger *slog.Logger
}

// Open connects to ClickHouse over the native protocol and pings it.
func Open(ctx context.Context, o Options) (driver.Conn, error) {
	if o.Addr == "" {
		return nil, fmt.Errorf("chstore: open: no address")
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Username == "" {
		o.Username = "default"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:     []string{o.Addr},
		Protocol: clickhouse.Native,
		Auth: clickhouse.Auth{
			Database: o.Database,
			Username: o.Username,
			Password: o.Password,
		},
		DialTimeout:     o.DialTimeout,
		ReadTimeout:     DefaultReadTimeout,
		MaxOpenConns:    8,
		MaxIdleConns:    4,
		ConnMaxLifetime: time.Hour,
		Logger:          DriverLogger(o.Logger),
		ClientInfo: clickhouse.ClientInfo{
			Products: []struct{ Name, Version string }{{Name: "moat", Version: "dev"}},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("chstore: open %s: %w", o.Addr, err)
	}
	pctx, cancel := withDefaultTimeout(ctx, pingTimeout)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("chstore: ping %s: %w", o.Addr, err)
	}
	return conn, nil
}

// withDefaultTimeout adds timeout to ctx unless it already has a deadline.
func withDefaultTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}

// DriverLogger adapts log for clickhouse-go's Options.Logger: it passes on
// the driver's warnings and errors only, and demotes to debug its
// "unsupported clickhouse version" warning (expected with 18.16) and its
// reports of query errors that the caller gets as errors anyway.
func DriverLogger(log *slog.Logger) *slog.Logger {
	if log == nil {
		log = slog.Default()
	}
	return slog.New(driverHandler{h: log.With("component", "clickhouse-go").Handler()})
}

type driverHandler struct{ h slog.Handler }

// demoted lists driver messages logged at debug level: the version warning
// (expected with 18.16), and failures the driver also returns to the caller,
// which reports them with its own context.
var demoted = map[string]bool{
	"unsupported clickhouse version":  true,
	"server exception received":       true,
	"failed to get first block":       true,
	"query processing failed":         true,
	"failed to bind query parameters": true,
}

func (d driverHandler) level(r slog.Record) slog.Level {
	if demoted[r.Message] {
		return slog.LevelDebug
	}
	return r.Level
}

func (d driverHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// Warn-level records may be demoted, so let them through to Handle.
	return l >= slog.LevelWarn && (d.h.Enabled(ctx, l) || d.h.Enabled(ctx, slog.LevelDebug))
}

func (d driverHandler) Handle(ctx context.Context, r slog.Record) error {
	if l := d.level(r); l != r.Level {
		if !d.h.Enabled(ctx, l) {
			return nil
		}
		r2 := slog.NewRecord(r.Time, l, r.Message, r.PC)
		r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
		r = r2
	} else if !d.h.Enabled(ctx, r.Level) {
		return nil
	}
	return d.h.Handle(ctx, r)
}

func (d driverHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return driverHandler{h: d.h.WithAttrs(as)}
}

func (d driverHandler) WithGroup(name string) slog.Handler {
	return driverHandler{h: d.h.WithGroup(name)}
}
