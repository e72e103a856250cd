package cli

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"
)

// healthcheckCommand probes a URL and exits 0 on 200: container images
// without a shell or curl use it for their health checks.
func healthcheckCommand() (*flag.FlagSet, func(context.Context) error) {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	var (
		url     string
		timeout time.Duration
	)
	fs.StringVar(&url, "url", "http://127.0.0.1:8080/readyz", "URL to probe")
	fs.DurationVar(&timeout, "timeout", 3*time.Second, "probe timeout")
	return fs, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d", url, res.StatusCode)
		}
		return nil
	}
}
