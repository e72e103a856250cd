package cli

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/moat-dev/moat/api"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/bearer"
	"github.com/moat-dev/moat/internal/kafka"
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/fingerprint"
)

// endUserFlags configure the end-user routes (/api/devices,
// /api/v1/devices): their bearer tokens and rate limits.
type endUserFlags struct {
	bearerKey, bearerKeyFile string
	bearerTTL                time.Duration
	tokenRate, ipRate        int
	commandTimeout           time.Duration
	activationTTL            time.Duration
}

func (f *endUserFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.bearerKey, "bearer-key", "", "secret key (at least 32 bytes) signing end users' bearer tokens, the same on every api instance; empty: derived from the device key")
	fs.StringVar(&f.bearerKeyFile, "bearer-key-file", "", "file holding the bearer key (instead of --bearer-key)")
	fs.DurationVar(&f.bearerTTL, "bearer-ttl", bearer.DefaultTTL, "validity of the bearer tokens issued by POST /v1/users/{id}/tokens")
	fs.IntVar(&f.tokenRate, "enduser-token-rate", 60, "end-user calls per minute per bearer token (0: unlimited)")
	fs.IntVar(&f.ipRate, "enduser-ip-rate", 300, "end-user calls per minute per client IP, unauthenticated ones included (0: unlimited)")
	fs.DurationVar(&f.commandTimeout, "enduser-command-timeout", api.DefaultCommandTimeout, "how long an end-user command waits for the scorer before 503")
	fs.DurationVar(&f.activationTTL, "activation-ttl", api.DefaultActivationTTL, "validity of trusted-device activation tokens")
}

// key returns the bearer key: the configured one, else one derived from
// the device key (bearer.NewSigner derives its own signing key from it).
func (f *endUserFlags) key(deviceKey []byte) ([]byte, error) {
	switch {
	case f.bearerKey != "" && f.bearerKeyFile != "":
		return nil, errors.New("give --bearer-key or --bearer-key-file, not both")
	case f.bearerKey != "":
		return []byte(f.bearerKey), nil
	case f.bearerKeyFile != "":
		b, err := os.ReadFile(f.bearerKeyFile)
		if err != nil {
			return nil, fmt.Errorf("read bearer key: %w", err)
		}
		return []byte(strings.TrimSpace(string(b))), nil
	}
	return deviceKey, nil
}

// sessionFlags configure sessions (scorer) and how the api shows them.
type sessionFlags struct {
	timeout time.Duration
}

func (f *sessionFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.timeout, "session-timeout", scorer.DefaultSessionTimeout, "inactivity after which a session is finished; the same on scorer and api")
}

// endUserDeps are what the end-user routes need from their role.
type endUserDeps struct {
	kafka     kafka.Config
	conn      driver.Conn
	database  string
	apps      *apps.Registry
	hasher    *fingerprint.Hasher
	deviceKey []byte
	out       api.Appender
	replies   api.Awaiter
	erasures  api.Erasures
	log       *slog.Logger
}

// newEndUser builds the end-user routes' handler; close its Pending after
// use.
func newEndUser(d endUserDeps, f endUserFlags, sf sessionFlags) (*api.EndUserHandler, *api.Pending, error) {
	key, err := f.key(d.deviceKey)
	if err != nil {
		return nil, nil, err
	}
	signer, err := bearer.NewSigner(key, f.bearerTTL, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("bearer key: %w", err)
	}
	ua, err := useragent.New(0)
	if err != nil {
		return nil, nil, err
	}
	pending, err := api.NewPending(d.kafka, d.log)
	if err != nil {
		return nil, nil, err
	}
	h, err := api.NewEndUserHandler(api.EndUserConfig{
		Store: api.NewStore(d.conn, d.database), Pending: pending, UA: ua, FP: d.hasher, Apps: d.apps, Signer: signer,
		Out: d.out, Replies: d.replies,
		TokenLimit:     bearer.NewLimiter(f.tokenRate, time.Minute, 0, nil),
		IPLimit:        bearer.NewLimiter(f.ipRate, time.Minute, 0, nil),
		SessionTimeout: sf.timeout, CommandTimeout: f.commandTimeout, ActivationTTL: f.activationTTL, Erasures: d.erasures, Log: d.log,
	})
	if err != nil {
		pending.Close()
		return nil, nil, err
	}
	return h, pending, nil
}
