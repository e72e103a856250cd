package scorer

import (
	"strings"
	"sync"

	"github.com/moat-dev/moat/schemas"
)

// uaInfo is what the decider derives from a User-Agent header alone: the
// parsed user agent and the bot list's verdict. Both are pure functions of
// the header (and of the parser's and list's data, fixed for the life of
// the decider), so they are cached by the header.
type uaInfo struct {
	// key is the header the entry is cached under.
	key     string
	ua      schemas.UserAgent
	botName string
	bot     bool
}

// uaCacheGeneration bounds one generation of the cache: at most twice
// as many headers are held.
const uaCacheGeneration = 4096

// uaCache holds recently seen headers in two generations: a lookup finds
// an entry in the current one or promotes it from the previous one; when
// the current one is full it becomes the previous one. Most traffic comes
// from a few hundred browser builds, so nearly every event hits, and a hit
// costs one map lookup instead of the parser's three LRU lookups (each
// with a lock and an allocation), its version joins and a bot list scan.
type uaCache struct {
	mu       sync.Mutex
	cur, old map[string]*uaInfo
	max      int
}

func newUACache(max int) *uaCache {
	return &uaCache{cur: make(map[string]*uaInfo, max), max: max}
}

func (c *uaCache) get(raw string) *uaInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[raw]; ok {
		return e
	}
	if e, ok := c.old[raw]; ok {
		c.putLocked(e)
		return e
	}
	return nil
}

func (c *uaCache) put(e *uaInfo) {
	c.mu.Lock()
	c.putLocked(e)
	c.mu.Unlock()
}

func (c *uaCache) putLocked(e *uaInfo) {
	if len(c.cur) >= c.max {
		c.old, c.cur = c.cur, make(map[string]*uaInfo, c.max)
	}
	c.cur[e.key] = e
}

// userAgent returns the parsed user agent and bot verdict of the raw
// User-Agent header ("" when the event has none), cached.
func (d *Decider) userAgent(raw string) *uaInfo {
	if e := d.uaCache.get(raw); e != nil {
		return e
	}
	e := d.parseUserAgent(strings.Clone(raw))
	d.uaCache.put(e)
	return e
}

// parseUserAgent derives a uaInfo without the cache.
func (d *Decider) parseUserAgent(raw string) *uaInfo {
	e := &uaInfo{key: raw, ua: d.ua.Parse(raw)}
	if d.enr.Bots != nil && raw != "" {
		e.botName, e.bot = d.enr.Bots.Match(raw)
	}
	return e
}
