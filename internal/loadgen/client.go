package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// conn sends requests one at a time; each worker owns one.
type conn interface {
	// do POSTs body to path, or GETs path when body is nil, and returns
	// the HTTP status.
	do(path string, body []byte) (int, error)
	close()
}

// newClient returns a constructor of per-worker connections.
func newClient(cfg Config) (func() conn, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	auth := basicAuth(cfg.Secret)
	switch cfg.Client {
	case ClientNetHTTP:
		tr := &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.Workers,
			MaxIdleConnsPerHost: cfg.Workers,
			MaxConnsPerHost:     cfg.Workers,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
			WriteBufferSize:     8 << 10,
			ReadBufferSize:      4 << 10,
		}
		cl := &http.Client{Transport: tr, Timeout: cfg.Timeout}
		base := u.Scheme + "://" + u.Host
		return func() conn {
			return &stdConn{cl: cl, base: base, urls: map[string]string{}, hdr: http.Header{
				"Authorization": {auth},
				"Content-Type":  {"application/json"},
				"User-Agent":    {"moat-loadgen"},
			}}
		}, nil
	default:
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), "80")
		}
		return func() conn {
			return &rawConn{addr: addr, host: u.Host, auth: auth, timeout: cfg.Timeout}
		}, nil
	}
}

// stdConn is a worker's view of the shared net/http client.
type stdConn struct {
	cl   *http.Client
	base string
	urls map[string]string
	hdr  http.Header // read-only once built; reused by the worker's requests
}

func (c *stdConn) do(path string, body []byte) (int, error) {
	u, ok := c.urls[path]
	if !ok {
		u = c.base + path
		c.urls[path] = u
	}
	var req *http.Request
	var err error
	if body == nil {
		req, err = http.NewRequest(http.MethodGet, u, nil)
	} else {
		req, err = http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	}
	if err != nil {
		return 0, err
	}
	req.Header = c.hdr
	resp, err := c.cl.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (c *stdConn) close() {}

// rawConn speaks just enough HTTP/1.1 over one keep-alive TCP connection:
// one request at a time, answers with Content-Length, chunked or
// close-delimited bodies. It costs a fraction of net/http's CPU (no
// per-connection goroutines, no header maps).
type rawConn struct {
	addr, host, auth string
	timeout          time.Duration

	c        net.Conn
	br       *bufio.Reader
	wbuf     []byte
	lastUsed time.Time
}

// idleReconnect: a connection idle this long is replaced before use, well
// within the server's idle timeout, so that a request is never written on a
// connection the server is closing.
const idleReconnect = 30 * time.Second

func (c *rawConn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

func (c *rawConn) dial() error {
	nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err != nil {
		return err
	}
	c.c = nc
	if c.br == nil {
		c.br = bufio.NewReaderSize(nc, 4<<10)
	} else {
		c.br.Reset(nc)
	}
	return nil
}

func (c *rawConn) do(path string, body []byte) (int, error) {
	now := time.Now()
	if c.c != nil && now.Sub(c.lastUsed) > idleReconnect {
		c.close()
	}
	w := c.wbuf[:0]
	if body == nil {
		w = append(w, "GET "...)
	} else {
		w = append(w, "POST "...)
	}
	w = append(w, path...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, c.host...)
	w = append(w, "\r\nAuthorization: "...)
	w = append(w, c.auth...)
	if body == nil {
		w = append(w, "\r\nUser-Agent: moat-loadgen\r\n\r\n"...)
	} else {
		w = append(w, "\r\nContent-Type: application/json\r\nUser-Agent: moat-loadgen\r\nContent-Length: "...)
		w = strconv.AppendInt(w, int64(len(body)), 10)
		w = append(w, "\r\n\r\n"...)
		w = append(w, body...)
	}
	c.wbuf = w

	for attempt := 0; ; attempt++ {
		reused := c.c != nil
		if !reused {
			if err := c.dial(); err != nil {
				return 0, err
			}
		}
		_ = c.c.SetDeadline(now.Add(c.timeout))
		if _, err := c.c.Write(w); err != nil {
			c.close()
			// A write that failed on a kept-alive connection the server
			// closed meanwhile: the request was not read, try once more on
			// a new connection.
			if reused && attempt == 0 {
				continue
			}
			return 0, err
		}
		status, keep, err := c.readResponse()
		if err != nil {
			c.close()
			return 0, err
		}
		c.lastUsed = time.Now()
		if !keep {
			c.close()
		}
		return status, nil
	}
}

var errMalformed = errors.New("loadgen: malformed HTTP response")

// readResponse reads one response and discards its body. keep reports
// whether the connection may carry another request.
func (c *rawConn) readResponse() (status int, keep bool, err error) {
	line, err := c.readLine()
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 204 No Content"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	keep = line[7] == '1'
	length := int64(-1)
	chunked := false
	for {
		h, err := c.readLine()
		if err != nil {
			return 0, false, err
		}
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("%w: header %q", errMalformed, h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			if asciiEqualFold(value, "close") {
				keep = false
			} else if asciiEqualFold(value, "keep-alive") {
				keep = true
			}
		}
	}
	switch {
	case status == 204 || status == 304 || status < 200:
	case chunked:
		if err := c.discardChunked(); err != nil {
			return 0, false, err
		}
	case length >= 0:
		if _, err := c.br.Discard(int(length)); err != nil {
			return 0, false, err
		}
	default: // body until close
		_, err := io.Copy(io.Discard, c.br)
		return status, false, err
	}
	return status, keep, nil
}

func (c *rawConn) discardChunked() error {
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if n == 0 {
			for { // trailers
				t, err := c.readLine()
				if err != nil {
					return err
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		if _, err := c.br.Discard(int(n)); err != nil {
			return err
		}
		if l, err := c.readLine(); err != nil || len(l) != 0 {
			return fmt.Errorf("%w: chunk end", errMalformed)
		}
	}
}

// readLine returns one line without its CRLF; the slice is valid until the
// next read.
func (c *rawConn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: line too long", errMalformed)
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
