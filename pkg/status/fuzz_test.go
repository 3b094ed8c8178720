package status

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"
)

// FuzzDecodeRecord: whatever answers on the socket, `kindnet status`
// decodes it or says it cannot, then judges and renders it — never a panic.
func FuzzDecodeRecord(f *testing.F) {
	if b, err := os.ReadFile("testdata/schema.golden"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"schemaVersion":1,"peers":[{"name":"a","state":"rejected","reason":"x"}],"reconcilers":[{"name":"routes","error":"boom"}]}`))
	f.Add([]byte(`{"schemaVersion":1,"source":{"name":"kubernetes","healthy":false,"reason":"forbidden"},"ipam":[{"range":"10.0.0.0/8","used":-1,"capacity":0}]}`))
	f.Add([]byte(`{"peers":null,"started":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"schemaVersion":1,"cni":{"present":true,"written":"2026-01-01T00:00:00Z"},"runtime":{"state":"not-ready","checked":"2026-01-01T00:00:20Z","message":"cni plugin not initialized"}}`))
	f.Add([]byte(`{"schemaVersion":1,"cni":{"present":true},"runtime":{"state":"unanswered","name":"x","checked":"0001-01-01T00:00:00Z"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := DecodeRecord(bytes.NewReader(data))
		if err != nil {
			return
		}
		rec.Stamp(time.Unix(1_800_000_000, 0))
		_ = Judge(rec)
		for _, o := range []RenderOptions{{}, {Color: true, Wide: true}} {
			if err := Render(io.Discard, rec, o); err != nil {
				t.Fatalf("render: %v", err)
			}
		}
	})
}
