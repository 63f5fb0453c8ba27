package main

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/spf13/cobra"

	"github.com/blvm/blvm-sandbox/policy"
)

// TestPolicyJSONRoundTrip: inspect NAME checks the process against the
// policy the daemon sends as JSON, so that JSON must carry every field.
func TestPolicyJSONRoundTrip(t *testing.T) {
	for name, path := range examples {
		t.Run(name, func(t *testing.T) {
			f := explainFlags{landlockABI: -1, nodeConfig: "../../examples/node.toml"}
			c, err := compileTarget(&f, &cobra.Command{}, path)
			if err != nil {
				t.Fatal(err)
			}
			js, err := json.Marshal(c.policy)
			if err != nil {
				t.Fatal(err)
			}
			var back policy.Policy
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(&back, c.policy) {
				again, _ := json.Marshal(&back)
				t.Errorf("the policy does not survive JSON (%d bytes out, %d back)", len(js), len(again))
			}
		})
	}
}
