package risk

import (
	"math"
	"slices"
	"sort"
	"sync"
)

// SignalWeight is how much a signal adds to each score, in log-odds units.
type SignalWeight struct {
	AccountTakeover, AccountAbuse, Bot float64
}

// Config tunes an Engine. DefaultConfig documents every default; the same
// numbers are in docs/signals.md.
type Config struct {
	// Policy decides the action when Input.Policy is nil.
	Policy *Policy

	// impossible_travel: faster than TravelSpeedKmh over at least
	// TravelMinKm from the last learned located event.
	TravelSpeedKmh, TravelMinKm float64
	// high_activity_account: more than this many events of the user in the
	// last 5 minutes, 1 hour or 24 hours (this event included).
	Vel5m, Vel1h, Vel24h int
	// BotVel5m: bot_behavior when the user's 5-minute count exceeds it.
	BotVel5m int
	// brute_force: at least BruteForceFails failed logins for the user in
	// the last hour. credential_stuffing (user level): at least
	// StuffingFails failed logins from at least StuffingIPs distinct IPs in
	// the last hour.
	BruteForceFails, StuffingFails, StuffingIPs int
	// Shared (cross-user) thresholds, per hour: events from one IP, events
	// from one device fingerprint, distinct users failing logins from one
	// IP; and distinct users seen on one device (within SharedUserTTL).
	IPEvents1h, DeviceEvents1h, IPFailUsers1h, AccountsPerDevice int
	SharedUserTTL                                                uint32

	// Account-takeover model (docs/signals.md, "The account-takeover model").
	// PriorStrength is the least pseudo-count α of the population prior in
	// the user's smoothed distribution (α is the user's count of new
	// values, Witten-Bell, when that is larger). FeatureWeights scale each
	// feature's log likelihood ratio, clamped to [MinLogRatio,
	// MaxLogRatio]; DeviceWeight the device fingerprint's.
	PriorStrength            float64
	FeatureWeights           [numFeatures]float64
	DeviceWeight             float64
	MinLogRatio, MaxLogRatio float64
	// Vocabulary is the assumed number of distinct values per feature, for
	// Laplace smoothing of the population frequencies. DeviceVocabulary is
	// that of device fingerprints, whose prior is always uniform (there is
	// no population table of devices).
	Vocabulary       [numFeatures]float64
	DeviceVocabulary float64

	// Base log-odds of each score before any evidence.
	BaseTakeover, BaseAbuse, BaseBot float64
	// Weights of each signal (lookup only; unknown signals weigh 0).
	Weights map[string]SignalWeight
	// FamiliarNetworkSignals name the signals about the address's network
	// that add nothing to any score when the address is in a /24 (/48)
	// the user has been learned at; they still fire. A datacenter or VPN
	// address is evidence of automation and anonymisation against a
	// network the user has not been verified on. On their own VPN or
	// cloud desktop their history explains it, and the takeover model's
	// ip_subnet feature weighs how familiar the network is. (Not tor: a
	// Tor circuit's exit is drawn at random, so a familiar exit says
	// nothing about who is behind it.)
	FamiliarNetworkSignals []string

	// LearnPopulation: learned events update the engine's population table.
	// Turn it off (after RestorePopulation) to score with a frozen
	// population, which makes assessments independent of how partitions
	// interleave in one process.
	LearnPopulation bool
	// PopulationCap bounds the population table (distinct feature values);
	// once full, new values are not added (deterministic).
	PopulationCap int
}

// DefaultConfig returns the defaults documented in docs/signals.md.
func DefaultConfig() Config {
	return Config{
		Policy:            DefaultPolicy(),
		TravelSpeedKmh:    1000,
		TravelMinKm:       500,
		Vel5m:             20,
		Vel1h:             60,
		Vel24h:            300,
		BotVel5m:          60,
		BruteForceFails:   10,
		StuffingFails:     5,
		StuffingIPs:       3,
		IPEvents1h:        300,
		DeviceEvents1h:    120,
		IPFailUsers1h:     5,
		AccountsPerDevice: 4,
		SharedUserTTL:     30 * 86400,
		PriorStrength:     1,
		// subnet, asn, country, browser, os, device type, language
		FeatureWeights:   [numFeatures]float64{0.5, 0.6, 1.0, 0.6, 0.8, 0.6, 0.5},
		DeviceWeight:     1,
		MinLogRatio:      -2,
		MaxLogRatio:      3,
		Vocabulary:       [numFeatures]float64{1 << 20, 80000, 250, 4, 4, 3, 12},
		DeviceVocabulary: 1 << 32,
		BaseTakeover:     -4,
		BaseAbuse:        -4,
		BaseBot:          -4.5,
		Weights: map[string]SignalWeight{
			SigNewDevice:                 {AccountTakeover: 0.2},
			SigNewCountry:                {AccountTakeover: 0.3},
			SigNewISP:                    {AccountTakeover: 0.2},
			SigNewLanguage:               {AccountTakeover: 0.2},
			SigNewOS:                     {AccountTakeover: 0.3},
			SigNewDeviceType:             {AccountTakeover: 0.2},
			SigImpossibleTravel:          {AccountTakeover: 2.5},
			SigBruteForce:                {AccountTakeover: 1.5},
			SigCredentialStuffing:        {AccountTakeover: 2.5, Bot: 1.5},
			SigProxyIP:                   {AccountTakeover: 0.8, AccountAbuse: 1.0, Bot: 0.5},
			SigTor:                       {AccountTakeover: 1.5, AccountAbuse: 2.0, Bot: 1.0},
			SigDatacenterIP:              {AccountTakeover: 1.0, AccountAbuse: 1.5, Bot: 2.0},
			SigSpoofedDevice:             {AccountTakeover: 1.0, AccountAbuse: 1.0, Bot: 2.5},
			SigHighActivityIP:            {AccountTakeover: 0.5, AccountAbuse: 1.5, Bot: 1.5},
			SigHighActivityDevice:        {AccountTakeover: 0.5, AccountAbuse: 1.5, Bot: 1.5},
			SigHighActivityAccount:       {AccountTakeover: 0.5, AccountAbuse: 2.0, Bot: 1.0},
			SigMultipleAccountsPerDevice: {AccountTakeover: 0.5, AccountAbuse: 2.5},
			SigMultipleAliasesPerEmail:   {AccountAbuse: 1.5},
			SigDisposableEmailDomain:     {AccountAbuse: 3.5},
			SigGeneratedEmail:            {AccountAbuse: 2.5},
			SigInvalidEmail:              {AccountAbuse: 2.5},
			SigWebCrawler:                {Bot: 6},
			SigHeadlessBrowser:           {AccountTakeover: 0.5, Bot: 6},
			SigHTTPClientLibrary:         {AccountTakeover: 0.5, Bot: 5.5},
			SigBotBehavior:               {Bot: 1.0},
			SigMissingHeaders:            {Bot: 2.5},
			SigInvalidDeviceData:         {Bot: 2.5},
			SigMissingDeviceData:         {Bot: 2.0},
		},
		FamiliarNetworkSignals: []string{SigDatacenterIP, SigProxyIP},
		LearnPopulation:        true,
		PopulationCap:          1 << 20,
	}
}

// Engine scores events. It holds the configuration and the population
// frequency table of the account-takeover model, which learned events feed.
// It is safe for concurrent use; for replay determinism give each
// partition its own Engine, or freeze the population (see
// Config.LearnPopulation).
type Engine struct {
	cfg Config
	w   [numSignals]SignalWeight
	// familiarNet: the FamiliarNetworkSignals.
	familiarNet sigset

	mu     sync.Mutex
	pop    map[uint64]uint32
	popTot [numFeatures]uint64
}

// NewEngine returns an Engine with cfg.
func NewEngine(cfg Config) *Engine {
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	e := &Engine{cfg: cfg, pop: make(map[uint64]uint32)}
	for i, name := range signalNames {
		e.w[i] = cfg.Weights[name]
		e.familiarNet.set(i, slices.Contains(cfg.FamiliarNetworkSignals, name))
	}
	return e
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.cfg }

// popFreq is the Laplace-smoothed population frequency of value h of f.
// Callers hold e.mu.
func (e *Engine) popFreq(f Feature, h uint32) float64 {
	c := float64(e.pop[uint64(f)<<32|uint64(h)])
	return (c + 1) / (float64(e.popTot[f]) + e.cfg.Vocabulary[f])
}

func (e *Engine) learnPop(fv *[numFeatures]uint32) {
	if !e.cfg.LearnPopulation {
		return
	}
	e.mu.Lock()
	for f := Feature(0); f < numFeatures; f++ {
		h := fv[f]
		if h == 0 {
			continue
		}
		k := uint64(f)<<32 | uint64(h)
		c, ok := e.pop[k]
		if !ok && len(e.pop) >= e.cfg.PopulationCap {
			continue
		}
		if c < math.MaxUint32 {
			e.pop[k] = c + 1
			e.popTot[f]++
		}
	}
	e.mu.Unlock()
}

// PopulationSize is the number of distinct feature values in the
// population table.
func (e *Engine) PopulationSize() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pop)
}

// MarshalPopulation snapshots the population table (sorted, so identical
// tables give identical bytes): 12 bytes per distinct value.
func (e *Engine) MarshalPopulation() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	keys := make([]uint64, 0, len(e.pop))
	for k := range e.pop {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	b := make([]byte, 0, 1+12*len(keys))
	b = append(b, 1)
	for _, k := range keys {
		b = appendU64(b, k)
		b = appendU32(b, e.pop[k])
	}
	return b
}

// RestorePopulation replaces the population table with a snapshot from
// MarshalPopulation.
func (e *Engine) RestorePopulation(b []byte) error {
	if len(b) < 1 || b[0] != 1 || (len(b)-1)%12 != 0 {
		return ErrStateCorrupt
	}
	pop := make(map[uint64]uint32, (len(b)-1)/12)
	var tot [numFeatures]uint64
	r := &reader{b: b[1:]}
	for len(r.b) > 0 {
		k, c := r.u64(), r.u32()
		if k>>32 >= uint64(numFeatures) {
			return ErrStateCorrupt
		}
		pop[k] = c
		tot[k>>32] += uint64(c)
	}
	e.mu.Lock()
	e.pop, e.popTot = pop, tot
	e.mu.Unlock()
	return nil
}

func appendU64(b []byte, v uint64) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24), byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56))
}

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

func logistic(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// round6 keeps six decimals so that scores print identically everywhere.
func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }
