package e2e_test

import (
	"fmt"
	"testing"

	"github.com/moat-dev/moat/internal/stacktest"
)

// TestReadYourRiskAnswer: the scorer answers /v1/risk before its
// transaction commits, yet a read right after the answer shows the
// decision: the app's backend issues a bearer token for the device the
// answer named, which needs the device to be the user's (404 otherwise).
func TestReadYourRiskAnswer(t *testing.T) {
	s := stacktest.New(t, stacktest.Options{})
	a := stacktest.Secret("app-a")
	for i := 0; i < 50; i++ {
		user := fmt.Sprintf("reader-%d", i)
		d := loginRisk(t, s, a, user, chromeUA, "")
		code, body := s.Post("/v1/users/"+user+"/tokens", a, `{"device_token":"`+d.Device.Token+`"}`)
		if code != 201 {
			t.Fatalf("token for the device of %s's risk answer: %d %s", user, code, body)
		}
	}
}
