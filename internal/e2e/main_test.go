// Package e2e_test drives the whole pipeline (HTTP -> kfake -> scorer ->
// projector -> ClickHouse -> api) the way an app would.
package e2e_test

import (
	"testing"

	"github.com/moat-dev/moat/internal/chtest"
)

func TestMain(m *testing.M) { chtest.Main(m) }
