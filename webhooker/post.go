package webhooker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moat-dev/moat/schemas"
)

// errorSnippet is how much of a failing response body is kept in the error.
const errorSnippet = 200

// result is the outcome of one HTTP attempt.
type result struct {
	status  int
	latency time.Duration
	// err is nil when the receiver answered 2xx.
	err error
	// retryable failures are retried (connection errors, timeouts, 5xx,
	// 408, 429); the others are permanent.
	retryable bool
	// retryAfter is the receiver's Retry-After (0 when absent).
	retryAfter time.Duration
}

// post makes one attempt to deliver body to e. attempt is 1-based.
func (w *Worker) post(ctx context.Context, e *endpoint, d *schemas.WebhookDelivery, body []byte, attempt int) result {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return result{err: fmt.Errorf("build request: %w", redactURL(err))}
	}
	now := w.now()
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", w.cfg.UserAgent)
	h.Set(HeaderCastleSignature, Sign(e.secrets[0], body))
	h.Set(HeaderSignature, SignTimestamped(now, body, e.secrets...))
	h.Set(HeaderDeliveryID, d.DeliveryID)
	h.Set(HeaderIdempotencyKey, d.DeliveryID)
	h.Set(HeaderAttempt, strconv.Itoa(attempt))

	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		r := result{latency: time.Since(start), err: redactURL(err), retryable: true}
		switch {
		case errors.Is(err, ErrAddressRefused):
			r.retryable = false
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			r.err = fmt.Errorf("timeout after %s: %w", r.latency.Round(time.Millisecond), r.err)
		}
		return r
	}
	snippet, readErr := drain(resp.Body, w.cfg.MaxResponseBytes, resp.StatusCode/100 != 2)
	resp.Body.Close()
	r := result{status: resp.StatusCode, latency: time.Since(start)}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		// Delivered, even if reading the rest of the body failed.
		return r
	case code >= 300 && code < 400:
		r.err = fmt.Errorf("status %d: redirects are not followed; update the endpoint url", code)
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 || code < 200:
		r.retryable = true
		r.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		r.err = fmt.Errorf("status %d%s", code, snippet)
	default:
		r.err = fmt.Errorf("status %d%s", code, snippet)
	}
	if readErr != nil {
		r.err = fmt.Errorf("%w (reading body: %v)", r.err, redactURL(readErr))
	}
	return r
}

// drain reads at most limit bytes of body and discards them; with keep it
// returns the first errorSnippet bytes as ": <text>" for an error message.
func drain(body io.Reader, limit int64, keep bool) (string, error) {
	var head bytes.Buffer
	var dst io.Writer = io.Discard
	if keep {
		dst = &prefixWriter{buf: &head, max: errorSnippet}
	}
	_, err := io.Copy(dst, io.LimitReader(body, limit))
	if !keep || head.Len() == 0 {
		return "", err
	}
	s := strings.ToValidUTF8(strings.TrimSpace(head.String()), "")
	if s == "" {
		return "", err
	}
	return ": " + s, err
}

// prefixWriter keeps the first max bytes written to it and swallows the rest.
type prefixWriter struct {
	buf *bytes.Buffer
	max int
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if room := p.max - p.buf.Len(); room > 0 {
		p.buf.Write(b[:min(room, len(b))])
	}
	return len(b), nil
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP
// date. It returns 0 when absent or unparsable, and caps it at a day.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(max(secs, 0)) * time.Second
		if secs > 86400 {
			d = 24 * time.Hour
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), 24*time.Hour)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// redactURL drops the URL from *url.Error: it may carry credentials or a
// token, and logs already name the endpoint.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}
