package conformance_test

import "encoding/json"

type jsonRaw = json.RawMessage

func jsonString(s string) (json.RawMessage, error) { return json.Marshal(s) }
