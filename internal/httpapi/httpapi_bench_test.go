package httpapi

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/moat-dev/moat/internal/apps"
	"github.com/moat-dev/moat/internal/metrics"
)

// BenchmarkMiddleware measures the middleware every ingest call passes
// (recovery, body limit, metrics, request log, authentication) around a
// handler that reads the body and answers 204.
func BenchmarkMiddleware(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg, err := apps.New([]apps.App{{ID: "app", Secret: "0123456789abcdef0123456789abcdef"}})
	if err != nil {
		b.Fatal(err)
	}
	e := New(Config{BodyLimit: 1 << 20, Metrics: metrics.New()}, log)
	e.Use(Authenticate(reg))
	e.POST("/v1/track", func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return err
		}
		_ = App(c)
		return c.NoContent(http.StatusNoContent)
	})
	body := strings.NewReader(`{"type":"$login"}`)
	req := httptest.NewRequest(http.MethodPost, "/v1/track", body)
	req.SetBasicAuth("", "0123456789abcdef0123456789abcdef")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		body.Seek(0, io.SeekStart)
		req.Body = io.NopCloser(body)
		w.code = 0
		clear(w.h)
		e.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
