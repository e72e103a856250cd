package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// TestBasicPassword checks the password parsing against the allocating
// implementation it replaced, on short and long credentials.
func TestBasicPassword(t *testing.T) {
	ref := func(h string) (string, bool) {
		scheme, rest, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Basic") {
			return "", false
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if !ok || pass == "" {
			return "", false
		}
		return pass, true
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	long := strings.Repeat("s", 200)
	for _, h := range []string{
		"", "Basic", "Basic ", "Bearer " + b64(":secret"), "basic " + b64(":secret"), "BASIC  " + b64(":secret") + " ",
		"Basic " + b64(":secret"), "Basic " + b64("user:secret:with:colons"), "Basic " + b64("nocolon"), "Basic " + b64("user:"),
		"Basic " + b64(":"), "Basic !!!", "Basic " + b64(":secret")[:5], "Basic " + b64(":"+long), "Basic " + b64(":" + long)[:100] + "!",
		"Basic " + b64(":"+strings.Repeat("x", 94)), "Basic " + b64(":"+strings.Repeat("x", 95)), "Basic " + b64(":"+strings.Repeat("x", 96)),
		"Basic " + strings.Repeat("QUFB", 32), "Basic " + strings.Repeat("QUFB", 33), "Basic\t" + b64(":secret"),
	} {
		var buf basicBuf
		got, ok := basicPassword(h, &buf)
		want, wantOK := ref(h)
		if string(got) != want || ok != wantOK {
			t.Errorf("basicPassword(%q) = %q, %v; want %q, %v", h, got, ok, want, wantOK)
		}
	}
}

// TestRequestLog checks what the request log writes: 5xx at Warn (also
// for an *echo.HTTPError), other requests only at Debug.
func TestRequestLog(t *testing.T) {
	for _, tc := range []struct {
		name    string
		level   slog.Level
		handler echo.HandlerFunc
		want    string // "" for no line
	}{
		{"204 at info", slog.LevelInfo, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, ""},
		{"204 at debug", slog.LevelDebug, func(c echo.Context) error { return c.NoContent(http.StatusNoContent) },
			`level=DEBUG msg=request method=POST path=/v1/x status=204 latency_ms=0`},
		{"HTTPError 502", slog.LevelInfo, func(echo.Context) error { return echo.NewHTTPError(http.StatusBadGateway) },
			`level=WARN msg=request method=POST path=/v1/x status=502 latency_ms=0 err="code=502, message=Bad Gateway"`},
		{"written 503", slog.LevelInfo, func(c echo.Context) error { return c.NoContent(http.StatusServiceUnavailable) },
			`level=WARN msg=request method=POST path=/v1/x status=503 latency_ms=0 err=<nil>`},
		// Castle errors are rendered by the error handler after the log:
		// the response status is still the default then.
		{"castle error", slog.LevelInfo, func(echo.Context) error { return &Error{Status: 503, Type: "service_unavailable", Message: "m"} }, ""},
		{"plain error at debug", slog.LevelDebug, func(echo.Context) error { return errors.New("boom") },
			`level=DEBUG msg=request method=POST path=/v1/x status=200 latency_ms=0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tc.level,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				}}))
			e := New(Config{BodyLimit: 1 << 20}, log)
			e.POST("/v1/x", tc.handler)
			e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/x", nil))
			var lines []string
			for l := range strings.Lines(out.String()) {
				if strings.Contains(l, "msg=request ") {
					lines = append(lines, strings.TrimSpace(l))
				}
			}
			switch {
			case tc.want == "" && len(lines) != 0:
				t.Errorf("logged %q, want nothing", lines)
			case tc.want != "" && (len(lines) != 1 || lines[0] != tc.want):
				t.Errorf("logged %q, want %q", lines, tc.want)
			}
		})
	}
}
