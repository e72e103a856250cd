package simulate

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer"
	"github.com/moat-dev/moat/scorer/risk"
)

// scorerUnderTest scores the traffic in time order. It sees requests only,
// never labels.
type scorerUnderTest interface {
	// legit scores a legitimate login and lets the scorer learn from it
	// as the product would.
	legit(l *Login) outcome
	// failed folds in a failed login.
	failed(l *Login)
	// attack scores an attack on its victim's current history without
	// changing it, so that attacks stay independent of each other.
	attack(a *Attack) outcome
}

// outcome is how a scorer judged one login: its score and, for Moat, the
// policy action and the signals.
type outcome struct {
	score   float64
	action  string
	signals []string
}

// Result is one scorer's scores.
type Result struct {
	Scorer string
	// Legit are the scores of the legitimate logins of the evaluation
	// period; Attacks those of each attacker type.
	Legit   []float64
	Attacks map[Label][]float64
	// Actions counts the policy actions (allow, challenge, deny) per label
	// when the scorer decides (Moat's default policy); nil otherwise.
	Actions map[Label]*[3]int
	// Signals counts, per label, the logins each signal fired on (Moat
	// only).
	Signals map[Label]map[string]int
}

func actionIndex(a string) int {
	switch a {
	case risk.ActionChallenge:
		return 1
	case risk.ActionDeny:
		return 2
	}
	return 0
}

// evaluate runs the legitimate logins and the attacks through s in time
// order (on ties, legitimate logins first).
func evaluate(ctx context.Context, name string, s scorerUnderTest, tr *Traffic, p *progress) (Result, error) {
	res := Result{Scorer: name, Attacks: map[Label][]float64{}, Actions: map[Label]*[3]int{}, Signals: map[Label]map[string]int{}}
	count := func(l Label, o outcome) {
		for _, s := range o.signals {
			m := res.Signals[l]
			if m == nil {
				m = map[string]int{}
				res.Signals[l] = m
			}
			m[s]++
		}
		if o.action == "" {
			return
		}
		c := res.Actions[l]
		if c == nil {
			c = &[3]int{}
			res.Actions[l] = c
		}
		c[actionIndex(o.action)]++
	}
	p.phase(name)
	i, j := 0, 0
	for i < len(tr.Logins) || j < len(tr.Attacks) {
		if (i+j)&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return res, err
			}
		}
		if j >= len(tr.Attacks) || i < len(tr.Logins) && tr.Logins[i].At <= tr.Attacks[j].Login.At {
			l := &tr.Logins[i]
			i++
			if l.Failed {
				s.failed(l)
			} else {
				o := s.legit(l)
				if !l.Train {
					res.Legit = append(res.Legit, o.score)
					count(Legitimate, o)
				}
			}
		} else {
			a := &tr.Attacks[j]
			j++
			o := s.attack(a)
			res.Attacks[a.Label] = append(res.Attacks[a.Label], o.score)
			count(a.Label, o)
		}
		p.tick()
	}
	if len(res.Actions) == 0 {
		res.Actions = nil
	}
	if len(res.Signals) == 0 {
		res.Signals = nil
	}
	return res, nil
}

// moatRun feeds the Decider events as ingest would write them.
type moatRun struct {
	d      *scorer.Decider
	users  []User
	states []scorer.UserState
	seq    int
}

func newMoatRun(d *scorer.Decider, tr *Traffic) *moatRun {
	return &moatRun{d: d, users: tr.Users, states: make([]scorer.UserState, len(tr.Users))}
}

const appID = "simulate"

// event builds the event ingest would log for a call.
func (m *moatRun) event(l *Login, kind schemas.Kind, typ, status string, at int64) *schemas.Event {
	m.seq++
	u := &m.users[l.User]
	h := map[string]string{}
	c := &l.Ctx
	if c.UA != "" {
		h["user-agent"] = c.UA
	}
	if c.Lang != "" {
		h["accept-language"] = c.Lang
	}
	if c.Accept != "" {
		h["accept"] = c.Accept
	}
	if c.CHUA != "" {
		h["sec-ch-ua"], h["sec-ch-ua-mobile"], h["sec-ch-ua-platform"] = c.CHUA, c.CHMobile, c.CHPlatform
	}
	return &schemas.Event{
		V: schemas.EnvelopeVersion, ID: "sim-" + strconv.Itoa(m.seq), AppID: appID, Kind: kind, Type: typ, Status: status,
		User:       schemas.User{ID: u.ID, Email: u.Email},
		Context:    schemas.Context{IP: c.IP.String(), Headers: h, ClientID: c.ClientID},
		ReceivedAt: time.UnixMilli(at).UTC(),
	}
}

func (m *moatRun) legit(l *Login) outcome {
	st := &m.states[l.User]
	dec, _ := m.d.Decide(m.event(l, schemas.KindRisk, "$login", "$succeeded", l.At), st)
	if dec.Action == risk.ActionChallenge {
		// the user passes the step-up; the app tracks it, and Moat learns
		// the login's device and place from it
		m.d.Decide(m.event(l, schemas.KindTrack, "$challenge", "$succeeded", l.At+30_000), st)
	}
	return outcome{dec.Risk, dec.Action, dec.Signals}
}

func (m *moatRun) failed(l *Login) {
	m.d.Decide(m.event(l, schemas.KindFilter, "$login", "$failed", l.At), &m.states[l.User])
}

func (m *moatRun) attack(a *Attack) outcome {
	// a deep copy of the victim's state: the attack must not change it
	b, err := m.states[a.Victim].MarshalBinary()
	if err != nil {
		panic(fmt.Sprintf("simulate: marshal state: %v", err)) // cannot fail for a valid state
	}
	var st scorer.UserState
	if err := st.UnmarshalBinary(b); err != nil {
		panic(fmt.Sprintf("simulate: unmarshal state: %v", err))
	}
	for k := range a.Tries {
		m.d.Decide(m.event(&a.Tries[k], schemas.KindFilter, "$login", "$failed", a.Tries[k].At), &st)
	}
	dec, _ := m.d.Decide(m.event(&a.Login, schemas.KindRisk, "$login", "$succeeded", a.Login.At), &st)
	return outcome{dec.Risk, dec.Action, dec.Signals}
}

// freemanRun enriches requests like the scorer (same geo data, same
// user-agent parser) and scores them with the baseline.
type freemanRun struct {
	m   *Freeman
	enr scorer.Enrichment
	ua  *useragent.Parser
}

func newFreemanRun(m *Freeman, enr scorer.Enrichment, ua *useragent.Parser) *freemanRun {
	return &freemanRun{m: m, enr: enr, ua: ua}
}

func (f *freemanRun) features(c *Context) FreemanFeatures {
	var x FreemanFeatures
	x[fIP] = c.IP.String()
	if g := f.enr.Geo.Lookup(c.IP); g.Found {
		if g.ASN != 0 {
			x[fASN] = strconv.FormatUint(uint64(g.ASN), 10)
		}
		x[fCountry] = g.CountryCode
	}
	if c.UA != "" {
		p := f.ua.Parse(c.UA)
		x[fUA], x[fBrowser], x[fOS], x[fDeviceType] = c.UA, p.Browser, p.OS, p.DeviceType
	}
	x[fLanguage] = risk.PrimaryLanguage(c.Lang)
	return x
}

func (f *freemanRun) legit(l *Login) outcome {
	x := f.features(&l.Ctx)
	s := f.m.Score(l.User, x)
	f.m.Learn(l.User, x)
	return outcome{score: s}
}

func (f *freemanRun) failed(*Login) {}

func (f *freemanRun) attack(a *Attack) outcome {
	return outcome{score: f.m.Score(a.Victim, f.features(&a.Login.Ctx))}
}

// progress reports on stderr how far the run is.
type progress struct {
	w     io.Writer
	total int
	n     int
	name  string
	start time.Time
	last  time.Time
	lastN int
}

func newProgress(w io.Writer) *progress {
	now := time.Now()
	return &progress{w: w, start: now, last: now}
}

func (p *progress) say(format string, args ...any) {
	if p.w != nil {
		fmt.Fprintf(p.w, "simulate: "+format+"\n", args...)
	}
}

func (p *progress) phase(name string) {
	p.name = name
	p.last, p.lastN = time.Now(), p.n
	p.say("scoring with %s", name)
}

func (p *progress) tick() {
	p.n++
	if p.w == nil || p.n&1023 != 0 {
		return
	}
	now := time.Now()
	if d := now.Sub(p.last); d >= 2*time.Second {
		rate := float64(p.n-p.lastN) / d.Seconds()
		p.say("%s: %5.1f%% done (%d/%d events, %.0f events/s)", p.name, 100*float64(p.n)/float64(max(1, p.total)), p.n, p.total, rate)
		p.last, p.lastN = now, p.n
	}
}

func (p *progress) done() {
	p.say("done: %d events scored in %s", p.n, time.Since(p.start).Round(100*time.Millisecond))
}
