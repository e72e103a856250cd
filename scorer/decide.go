package scorer

import (
	"cmp"
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/moat-dev/moat/internal/botlist"
	"github.com/moat-dev/moat/internal/emailcheck"
	"github.com/moat-dev/moat/internal/geoip"
	"github.com/moat-dev/moat/internal/useragent"
	"github.com/moat-dev/moat/schemas"
	"github.com/moat-dev/moat/scorer/fingerprint"
	"github.com/moat-dev/moat/scorer/risk"
)

// Enrichment is the offline data the scorer looks events up in. Every part
// is optional: a missing one turns its signals off.
type Enrichment struct {
	Geo   *geoip.DB
	Email *emailcheck.Checker
	Bots  *botlist.List
}

// Decider turns events into decisions. It is a pure function of the event,
// the user's state and its keys and data files (no clock, no randomness,
// no map-order dependence), so replaying the log reproduces every decision.
// It is safe for concurrent use on different users.
type Decider struct {
	ua       *useragent.Parser
	fp       *fingerprint.Hasher
	engine   *risk.Engine
	enr      Enrichment
	policies map[string]*risk.Policy
	// lists answers the policies' list conditions (nil: none holds).
	lists risk.Membership
	// sessionTimeout ends idle sessions (SetSessionTimeout; 0: default).
	sessionTimeout time.Duration
	// shared answers the cross-user signals (SetShared; nil: off).
	shared risk.Shared
	// uaCache holds the parsed user agents and bot verdicts of recent
	// User-Agent headers.
	uaCache *uaCache
}

// NewDecider returns a Decider. policies maps app ids to their policy
// (apps without one use Castle's bands: risk below 0.6 allow, below 0.9
// challenge, else deny).
func NewDecider(ua *useragent.Parser, fp *fingerprint.Hasher, enr Enrichment, policies map[string]*risk.Policy) *Decider {
	cfg := risk.DefaultConfig()
	// The population frequency table of the takeover model would be state
	// outside the per-user changelog, so it is not learned: values are
	// scored against a uniform prior over each feature's vocabulary.
	cfg.LearnPopulation = false
	if enr.Email == nil {
		enr.Email = emailcheck.New(nil)
	}
	return &Decider{ua: ua, fp: fp, engine: risk.NewEngine(cfg), enr: enr, policies: policies, uaCache: newUACache(uaCacheGeneration)}
}

// NewDeciderWithConfig is NewDecider with the risk engine's configuration
// given instead of the scorer's. The quality harness (internal/simulate)
// uses it to evaluate alternatives, such as a learned population; the
// scorer role uses NewDecider.
func NewDeciderWithConfig(ua *useragent.Parser, fp *fingerprint.Hasher, enr Enrichment, policies map[string]*risk.Policy, cfg risk.Config) *Decider {
	d := NewDecider(ua, fp, enr, policies)
	d.engine = risk.NewEngine(cfg)
	return d
}

// NewState returns an empty user state.
func (d *Decider) NewState() State { return &UserState{} }

// decide derives the risk decision for one event (Decide adds sessions),
// folds the event into the user's state, and returns the notifications it
// raises.
func (d *Decider) decide(ev *schemas.Event, st *UserState) (schemas.Decision, []schemas.Notification) {
	switch ev.Kind {
	case schemas.KindDeviceApprove, schemas.KindDeviceReport:
		return d.feedback(ev, st)
	case schemas.KindImpersonateStart:
		st.impersonatedSinceMs = ev.ReceivedAt.UnixMilli()
		return schemas.Decision{V: schemas.DecisionVersion, Event: *ev}, nil
	case schemas.KindImpersonateEnd:
		st.impersonatedSinceMs = 0
		return schemas.Decision{V: schemas.DecisionVersion, Event: *ev}, nil
	case schemas.KindUserArchiveDevices, schemas.KindUserRecover:
		st.recover(ev.Kind == schemas.KindUserArchiveDevices)
		return schemas.Decision{V: schemas.DecisionVersion, Event: *ev}, nil
	}
	// Header names are stored normalized.
	raw := ev.Context.Headers["user-agent"]
	if raw == "true" { // scrubbed by the SDK
		raw = ""
	}
	uai := d.userAgent(raw)
	ua := uai.ua
	attrs := fingerprint.AttributesOf(ev, ua)
	fp := d.fp.Fingerprint(ev.AppID, attrs)
	dev := schemas.Device{Token: d.deviceToken(ev.AppID, ev.User.ID, fp, st), Fingerprint: fp, UserAgent: ua}
	in := risk.Input{Event: ev, Device: dev, DeviceIdentified: attrs.ClientID != ""}
	// The decision's enrichments and policy outcome share one allocation,
	// made when the first of them is.
	var parts *decisionParts
	newParts := func() *decisionParts {
		if parts == nil {
			parts = new(decisionParts)
		}
		return parts
	}
	var ipInfo *schemas.IPInfo
	if addr, err := netip.ParseAddr(ev.Context.IP); err == nil && d.enr.Geo != nil {
		g := d.enr.Geo.Lookup(addr)
		in.IP = risk.IPInfo{CountryCode: g.CountryCode, Region: g.Region, City: g.City, Lat: g.Lat, Lon: g.Lon,
			ASN: g.ASN, ISP: g.ISP, Datacenter: g.Datacenter, Proxy: g.Proxy, Tor: g.Tor, Found: g.Found}
		ipInfo = &newParts().ip
		*ipInfo = schemas.IPInfo{CountryCode: g.CountryCode, Region: g.Region, City: g.City, Lat: g.Lat, Lon: g.Lon,
			ASN: g.ASN, ISP: g.ISP, Datacenter: g.Datacenter, Proxy: g.Proxy, Tor: g.Tor}
	}
	var emailInfo *schemas.EmailInfo
	if email := ev.Email(); email != "" {
		e := d.enr.Email.Check(email)
		in.Email = risk.EmailInfo{Normalized: e.Normalized, Domain: e.Domain, Address: email, Valid: e.Valid, Disposable: e.Disposable, Generated: e.Generated}
		if e.Aliased {
			in.Email.Alias = strings.ToLower(strings.TrimSpace(email))
		}
		emailInfo = &newParts().email
		*emailInfo = schemas.EmailInfo{Normalized: e.Normalized, Domain: e.Domain, Disposable: e.Disposable, Valid: e.Valid}
	}
	in.BotName, in.Bot = uai.botName, uai.bot
	if st.impersonatedSinceMs != 0 {
		// Support staff acting as the user: keep the event, marked, but
		// score nothing and learn nothing.
		dec := schemas.Decision{V: schemas.DecisionVersion, Event: *ev, Device: dev, Impersonated: true, IP: ipInfo, Email: emailInfo}
		if scored(ev.Kind) {
			dec.Action = "allow"
			dec.Policy = &schemas.PolicyOutcome{Action: "allow", ID: "impersonation", Name: "Impersonation", RevisionID: "impersonation"}
		}
		return dec, nil
	}
	var listMatches []schemas.ListMatch
	if p, ok := d.policies[ev.AppID]; ok {
		in.Policy = p
		if d.lists != nil && p.UsesLists() {
			in.Lists, listMatches = p.ListMatches(d.lists, ev.AppID, listValues(ev, &dev, ipInfo, emailInfo), ev.ReceivedAt)
		}
	}
	in.Trusted, in.Reported = st.feedbackOf(fp)
	if d.shared != nil {
		// The cross-user state and the observations topic hold keyed
		// hashes of IPs and mailboxes, never the values (fingerprints
		// already are keyed hashes).
		in.Shared = d.shared
		if ip := ev.Context.IP; ip != "" {
			in.IPKey = d.fp.Pseudonym(ev.AppID, "ip", ip)
		}
		if e := cmp.Or(in.Email.Normalized, in.Email.Address); e != "" {
			in.EmailKey = d.fp.Pseudonym(ev.AppID, "email", strings.ToLower(strings.TrimSpace(e)))
		}
	}
	a := d.engine.Assess(&st.Risk, in)

	dec := schemas.Decision{
		V:       schemas.DecisionVersion,
		Event:   *ev,
		Device:  dev,
		Risk:    a.Risk,
		Scores:  schemas.Scores{AccountTakeover: a.Scores.AccountTakeover, AccountAbuse: a.Scores.AccountAbuse, Bot: a.Scores.Bot},
		Signals: a.Signals,
		IP:      ipInfo,
		Email:   emailInfo,
		Trusted: a.Feedback == "trusted",
		Lists:   listMatches,

		Observations: a.Observations,
	}
	if len(a.Contributions) > 0 {
		dec.Contributions = make([]schemas.Contribution, len(a.Contributions))
		for i := range a.Contributions {
			c := &a.Contributions[i]
			dec.Contributions[i] = schemas.Contribution{Name: contributionName(c.Score, c.Name), Kind: c.Kind, Value: c.Value}
		}
	}
	if !scored(ev.Kind) {
		return dec, nil
	}
	dec.Action = a.Policy.Action
	// Castle's policy name is the matching rule's ("Step up MFA on
	// suspicious logins"); the policy's own name when no rule matched.
	name := a.Policy.Name
	if a.Policy.RuleName != "" && a.Policy.RuleName != "default" {
		name = a.Policy.RuleName
	}
	dec.Policy = &newParts().policy
	*dec.Policy = schemas.PolicyOutcome{Action: a.Policy.Action, ID: a.Policy.ID, Name: name, RevisionID: a.Policy.RevisionID}
	if ev.Options != nil && ev.Options.TestApp {
		applyTestToken(&dec, ev.Context.RequestToken)
	}
	notes := d.notifications(&dec, st)
	if a.Policy.Notify && !dec.Impersonated {
		notes = append(notes, policyMatched(&dec, a.Policy.RuleID))
	}
	return dec, notes
}

// decisionParts are the parts of a decision it points to.
type decisionParts struct {
	ip     schemas.IPInfo
	email  schemas.EmailInfo
	policy schemas.PolicyOutcome
}

// contributionNames holds "score:name" for every contribution the risk
// engine can report, so that naming one does not build a string.
var contributionNames = func() map[[2]string]string {
	names := append([]string{"base", "device", "reported_device", "trusted_device"}, risk.Signals()...)
	for f := risk.Feature(0); f <= risk.FeatLanguage; f++ {
		names = append(names, f.String())
	}
	m := make(map[[2]string]string, 3*len(names))
	for _, score := range []string{risk.ScoreAccountTakeover, risk.ScoreAccountAbuse, risk.ScoreBot} {
		for _, n := range names {
			m[[2]string{score, n}] = score + ":" + n
		}
	}
	return m
}()

// contributionName is score + ":" + name.
func contributionName(score, name string) string {
	if s, ok := contributionNames[[2]string{score, name}]; ok {
		return s
	}
	return score + ":" + name
}

// policyMatched is the $policy.matched notification of a decision whose
// rule asked for one. Unlike the security webhooks it fires on every match;
// its data is the decision as /v1/risk answers it with expand (Castle: "the
// event information you can see in the Explore view"), plus the rule.
func policyMatched(dec *schemas.Decision, ruleID string) schemas.Notification {
	n := NewNotification(schemas.NotifyPolicyMatched, dec)
	var data map[string]any
	_ = json.Unmarshal(n.Data, &data) // NewNotification wrote it
	ev := &dec.Event
	data["rule_id"] = ruleID
	data["event"] = map[string]any{"id": ev.ID, "type": ev.Type, "status": ev.Status, "name": ev.Name}
	data["risk"] = dec.Risk
	data["scores"] = map[string]any{
		"account_takeover": map[string]float64{"score": dec.Scores.AccountTakeover},
		"account_abuse":    map[string]float64{"score": dec.Scores.AccountAbuse},
		"bot":              map[string]float64{"score": dec.Scores.Bot},
	}
	signals := map[string]any{}
	for _, s := range dec.Signals {
		signals[s] = map[string]any{}
	}
	data["signals"] = signals
	if dec.IP != nil {
		data["ip"] = dec.IP
	}
	if dec.Email != nil {
		data["email"] = dec.Email
	}
	n.Data, _ = json.Marshal(data) // strings, numbers and maps: cannot fail
	return n
}

// feedback applies a device command: later events from the device are
// scored as trusted (approve: takeover risk 0) or compromised (report: risk
// 1.0) until newer feedback overwrites it. A report raises
// $incident.confirmed.
func (d *Decider) feedback(ev *schemas.Event, st *UserState) (schemas.Decision, []schemas.Notification) {
	dec := schemas.Decision{V: schemas.DecisionVersion, Event: *ev}
	if ev.Device == nil || ev.Device.Fingerprint == "" {
		return dec, nil
	}
	dec.Device = schemas.Device{Token: ev.Device.Token, Fingerprint: ev.Device.Fingerprint}
	approved := ev.Kind == schemas.KindDeviceApprove
	st.setFeedback(ev.Device.Fingerprint, approved, ev.ReceivedAt.UnixMilli())
	// Every feedback is a $device.updated for systems that mirror devices.
	notes := []schemas.Notification{NewNotification(schemas.NotifyDeviceUpdated, &dec)}
	if approved {
		dec.Trusted = true
		return dec, notes
	}
	dec.Risk = 1
	dec.Scores.AccountTakeover = 1
	if st.notify("report", ev.Device.Fingerprint) {
		notes = append(notes, NewNotification(schemas.NotifyIncidentConfirmed, &dec))
	}
	return dec, notes
}

// notifications raises Castle's security webhooks: $incident.confirmed
// when the policy denies a $succeeded event, $review.opened when it
// challenges one; each once per user and device, as Castle does.
func (d *Decider) notifications(dec *schemas.Decision, st *UserState) []schemas.Notification {
	ev := &dec.Event
	if ev.Status != "$succeeded" || ev.User.ID == "" {
		return nil
	}
	var typ string
	switch dec.Action {
	case "deny":
		typ = schemas.NotifyIncidentConfirmed
	case "challenge":
		typ = schemas.NotifyReviewOpened
	default:
		return nil
	}
	if !st.notify(typ, dec.Device.Fingerprint) {
		return nil
	}
	return []schemas.Notification{NewNotification(typ, dec)}
}

// NewNotification builds a notification about a decision, with an id
// derived from the event and the type so that a redelivered decision gives
// the same notification.
func NewNotification(typ string, dec *schemas.Decision) schemas.Notification {
	ev := &dec.Event
	id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(ev.ID+"/"+typ)).String()
	dataID := id
	if typ == schemas.NotifyReviewOpened {
		// The review is the challenged event: GET /v1/reviews/{id} reads
		// it from the timeline.
		dataID = ev.ID
	}
	data := map[string]any{
		"id":           dataID,
		"device_token": dec.Device.Token,
		"user_id":      ev.User.ID,
		"trigger":      trigger(ev),
		"context":      notificationContext(dec),
	}
	if dec.Policy != nil {
		data["policy"] = dec.Policy
	}
	b, _ := json.Marshal(data) // only strings, numbers and maps: cannot fail
	return schemas.Notification{
		V: schemas.NotificationVersion, ID: id, AppID: ev.AppID, Type: typ,
		CreatedAt: ev.ReceivedAt.UTC().Truncate(time.Millisecond), UserID: ev.User.ID,
		DeviceToken: dec.Device.Token, EventID: ev.ID, Data: b,
	}
}

// trigger names what caused a notification: the event ("$login.succeeded")
// or the command ("$device.report").
func trigger(ev *schemas.Event) string {
	if ev.Type == "" {
		return "$" + string(ev.Kind)
	}
	if ev.Status == "" {
		return ev.Type
	}
	return ev.Type + "." + strings.TrimPrefix(ev.Status, "$")
}

func notificationContext(dec *schemas.Decision) map[string]any {
	ua := dec.Device.UserAgent
	ctx := map[string]any{
		"ip": dec.Event.Context.IP,
		"user_agent": map[string]any{
			"raw": ua.Raw, "browser": ua.Browser, "version": ua.BrowserVersion, "os": strings.TrimSpace(ua.OS + " " + ua.OSVersion),
			"mobile": ua.DeviceType == "mobile", "platform": ua.Platform, "device": ua.DeviceFamily, "family": ua.Browser,
		},
	}
	if ip := dec.IP; ip != nil && ip.CountryCode != "" {
		ctx["location"] = map[string]any{"country_code": ip.CountryCode, "region": ip.Region, "city": ip.City, "lat": ip.Lat, "lon": ip.Lon}
	}
	return ctx
}

// scored reports whether calls of kind get a policy decision.
func scored(k schemas.Kind) bool {
	return k == schemas.KindRisk || k == schemas.KindFilter || k == schemas.KindAuthenticate
}

// applyTestToken honours Castle's sandbox request tokens
// ("test|policy.action:deny|risk:0.9"): for test apps only, the token
// forces the action and the risk. Unknown parameters are ignored.
func applyTestToken(d *schemas.Decision, token string) {
	rest, ok := strings.CutPrefix(token, "test|")
	if !ok {
		return
	}
	for _, kv := range strings.Split(rest, "|") {
		k, v, _ := strings.Cut(kv, ":")
		switch k {
		case "policy.action":
			switch v {
			case "allow", "challenge", "deny":
				d.Action = v
				d.Policy = &schemas.PolicyOutcome{Action: v, ID: "test-token", Name: "Test token", RevisionID: "test-token"}
			}
		case "risk":
			if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f <= 1 {
				d.Risk = f
				d.Scores.AccountTakeover = f
			}
		}
	}
}

// UserState is the scorer's state of one user (or anonymous subject): the
// risk engine's bounded history, and the devices already notified about.
type UserState struct {
	Risk risk.UserState
	// notified holds hashes of (type, fingerprint) already notified, most
	// recent last, at most maxNotified.
	notified []uint64
	// feedback is the latest approve/report per device, most recent last,
	// at most maxFeedback.
	feedback []deviceFeedback
	// impersonatedSinceMs is when the current impersonation started (0:
	// the user is not impersonated).
	impersonatedSinceMs int64
	// eu holds the sessions, forgotten devices and activation tokens
	// (scorer/sessions.go).
	eu endUserState
}

type deviceFeedback struct {
	fp       uint64
	approved bool
	atMs     int64
}

const (
	maxNotified  = 32
	maxFeedback  = 16
	stateVersion = 4
)

func fpHash(fp string) uint64 {
	h := sha1.Sum([]byte(fp))
	return binary.LittleEndian.Uint64(h[:8])
}

// setFeedback records the latest feedback on a device.
func (s *UserState) setFeedback(fp string, approved bool, atMs int64) {
	k := fpHash(fp)
	for i, f := range s.feedback {
		if f.fp == k {
			s.feedback = append(s.feedback[:i], s.feedback[i+1:]...)
			break
		}
	}
	s.feedback = append(s.feedback, deviceFeedback{fp: k, approved: approved, atMs: atMs})
	if len(s.feedback) > maxFeedback {
		s.feedback = s.feedback[len(s.feedback)-maxFeedback:]
	}
}

// recover applies an account recovery: the security notifications fire
// again for every device (a new incident after recovery is news), and with
// archive the approvals are withdrawn, so no device skips a challenge
// until it is approved again. Reports stay: a device reported as the
// attacker's stays pegged at risk 1.0. The statistical history of the user
// is kept: their habits did not change.
func (s *UserState) recover(archive bool) {
	s.notified = nil
	if !archive {
		return
	}
	kept := s.feedback[:0]
	for _, f := range s.feedback {
		if !f.approved {
			kept = append(kept, f)
		}
	}
	s.feedback = kept
}

// feedbackOf says whether the device is approved or reported.
func (s *UserState) feedbackOf(fp string) (trusted, reported bool) {
	if fp == "" || len(s.feedback) == 0 {
		return false, false
	}
	k := fpHash(fp)
	for _, f := range s.feedback {
		if f.fp == k {
			return f.approved, !f.approved
		}
	}
	return false, false
}

// notify records that typ fired for fingerprint and reports whether it is
// the first time.
func (s *UserState) notify(typ, fp string) bool {
	h := sha1.Sum([]byte(typ + "\x00" + fp))
	k := binary.LittleEndian.Uint64(h[:8])
	for _, n := range s.notified {
		if n == k {
			return false
		}
	}
	s.notified = append(s.notified, k)
	if len(s.notified) > maxNotified {
		s.notified = s.notified[len(s.notified)-maxNotified:]
	}
	return true
}

// MarshalBinary encodes the state: a version byte, the risk history
// (length-prefixed) and the notified hashes.
func (s *UserState) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, s.sizeHint()))
}

// sizeHint is about the size of the encoding, rounded up.
func (s *UserState) sizeHint() int {
	return 40 + riskLenRoom + s.Risk.BinarySize() + 8*len(s.notified) + 24*len(s.feedback) + s.eu.sizeHint()
}

// riskLenRoom is the room left for the uvarint length of the risk state
// before it is appended: enough for any risk state (risk.MaxStateSize).
const riskLenRoom = 3

// AppendBinary appends the encoding of MarshalBinary to b.
func (s *UserState) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, stateVersion)
	// The risk state is appended after room for its length, which is then
	// written and the state moved back over the room left (no copy of the
	// risk state through a buffer of its own).
	start := len(b)
	b = append(b, make([]byte, riskLenRoom)...)
	b, err := s.Risk.AppendBinary(b)
	if err != nil {
		return nil, err
	}
	n := len(b) - start - riskLenRoom
	var lenBuf [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(lenBuf[:], uint64(n))
	if k <= riskLenRoom {
		copy(b[start+k:], b[start+riskLenRoom:])
		b = b[:len(b)-(riskLenRoom-k)]
		copy(b[start:], lenBuf[:k])
	} else { // cannot happen (risk.MaxStateSize): the long way
		r := append([]byte(nil), b[start+riskLenRoom:]...)
		b = append(append(b[:start], lenBuf[:k]...), r...)
	}
	b = binary.AppendUvarint(b, uint64(len(s.notified)))
	for _, n := range s.notified {
		b = binary.LittleEndian.AppendUint64(b, n)
	}
	b = binary.AppendUvarint(b, uint64(len(s.feedback)))
	for _, f := range s.feedback {
		b = binary.LittleEndian.AppendUint64(b, f.fp)
		a := byte(0)
		if f.approved {
			a = 1
		}
		b = append(b, a)
		b = binary.AppendVarint(b, f.atMs)
	}
	b = binary.AppendVarint(b, s.impersonatedSinceMs)
	b = s.eu.appendBinary(b)
	return b, nil
}

var errCorruptState = errors.New("scorer: corrupt user state")

// UnmarshalBinary decodes MarshalBinary's output (version 1 had no
// feedback section, version 3 no end-user section: sessions.go).
func (s *UserState) UnmarshalBinary(b []byte) error {
	if len(b) < 1 || b[0] < 1 || b[0] > stateVersion {
		return errCorruptState
	}
	version := b[0]
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return errCorruptState
	}
	if err := s.Risk.UnmarshalBinary(b[k : k+int(n)]); err != nil {
		return err
	}
	b = b[k+int(n):]
	m, k := binary.Uvarint(b)
	if k <= 0 || m > maxNotified || uint64(len(b)-k) < 8*m {
		return errCorruptState
	}
	b = b[k:]
	s.notified = make([]uint64, m)
	for i := range s.notified {
		s.notified[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	b = b[8*m:]
	s.feedback = nil
	if version >= 2 {
		f, k := binary.Uvarint(b)
		if k <= 0 || f > maxFeedback {
			return errCorruptState
		}
		b = b[k:]
		for i := uint64(0); i < f; i++ {
			if len(b) < 9 {
				return errCorruptState
			}
			fb := deviceFeedback{fp: binary.LittleEndian.Uint64(b), approved: b[8] == 1}
			at, k := binary.Varint(b[9:])
			if k <= 0 {
				return errCorruptState
			}
			fb.atMs = at
			b = b[9+k:]
			s.feedback = append(s.feedback, fb)
		}
	}
	s.impersonatedSinceMs = 0
	if version >= 3 {
		v, k := binary.Varint(b)
		if k <= 0 {
			return errCorruptState
		}
		s.impersonatedSinceMs = v
		b = b[k:]
	}
	s.eu = endUserState{}
	if version >= 4 {
		var err error
		if b, err = s.eu.readBinary(b); err != nil {
			return err
		}
	}
	if len(b) != 0 {
		return errCorruptState
	}
	return nil
}
