package simulate

import "math"

// The features of the baseline, after Freeman et al., "Who Are You? A
// Statistical Approach to Measuring User Authenticity" (NDSS 2016): the
// IP address and what it derives (ASN, country), the user-agent string and
// what it derives (browser, OS, device type), and the browser language.
const (
	fIP = iota
	fASN
	fCountry
	fUA
	fBrowser
	fOS
	fDeviceType
	fLanguage
	numFreemanFeatures
)

// FreemanFeatureNames name the baseline's features, in order.
var FreemanFeatureNames = [numFreemanFeatures]string{"ip", "asn", "country", "user_agent", "browser", "os", "device_type", "language"}

// FreemanFeatures are one login's feature values ("": unknown).
type FreemanFeatures [numFreemanFeatures]string

// Freeman is the baseline: the plain statistical model of Freeman et al.
// A login x of user u scores
//
//	S(u, x) = Σ_f log p(x_f | population) / p̃(x_f | u)
//
// which is the log likelihood ratio of "an attacker, who looks like the
// average user" against "u", with the features assumed independent. The
// population distribution is add-one smoothed over the values seen plus
// one unseen value; the user's distribution is smoothed against it,
//
//	p̃(v | u) = (c_u(v) + α·p(v | population)) / (n_u + α),
//
// so that a value the user never used keeps the probability the population
// gives it. Both learn from the same legitimate logins, in time order. It
// keeps exact values (the full IP address and user agent) in unbounded
// maps: it is an evaluation baseline, not a production model.
type Freeman struct {
	alpha float64
	pop   [numFreemanFeatures]map[string]int
	popN  [numFreemanFeatures]int
	users map[int]*freemanUser
}

type freemanUser struct {
	n [numFreemanFeatures]int
	c [numFreemanFeatures]map[string]int
}

// NewFreeman returns an empty model with smoothing strength alpha.
func NewFreeman(alpha float64) *Freeman {
	m := &Freeman{alpha: alpha, users: map[int]*freemanUser{}}
	for f := range m.pop {
		m.pop[f] = map[string]int{}
	}
	return m
}

func (m *Freeman) popP(f int, v string) float64 {
	return float64(m.pop[f][v]+1) / float64(m.popN[f]+len(m.pop[f])+1)
}

// Score is S(u, x): higher is more suspicious; 0 for a user with no
// history.
func (m *Freeman) Score(user int, x FreemanFeatures) float64 {
	u := m.users[user]
	if u == nil {
		return 0
	}
	var s float64
	for f, v := range x {
		if v == "" || u.n[f] == 0 {
			continue
		}
		p := m.popP(f, v)
		pu := (float64(u.c[f][v]) + m.alpha*p) / (float64(u.n[f]) + m.alpha)
		s += math.Log(p / pu)
	}
	return s
}

// Learn folds a legitimate login of user into the user's and the
// population's counts.
func (m *Freeman) Learn(user int, x FreemanFeatures) {
	u := m.users[user]
	if u == nil {
		u = &freemanUser{}
		for f := range u.c {
			u.c[f] = map[string]int{}
		}
		m.users[user] = u
	}
	for f, v := range x {
		if v == "" {
			continue
		}
		u.c[f][v]++
		u.n[f]++
		m.pop[f][v]++
		m.popN[f]++
	}
}
