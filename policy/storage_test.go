package policy

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/blvm/blvm-sandbox/manifest"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

func compileStorageFor(t *testing.T, cfg *nodeconfig.Config, backend string) (*Policy, error) {
	t.Helper()
	c := catalog(t)
	m := &manifest.Manifest{Name: "probe", Version: "1.0.0", EntryPoint: "probe"}
	set, err := c.Resolve(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := testHost
	h.StorageBackend = backend
	return Compile(m, set, cfg, h)
}

func TestStorageCarriesQuotaAndBackend(t *testing.T) {
	cfg := permissive()
	cfg.Sandbox.DiskBytes = 64 << 20
	cfg.Modules = map[string]*nodeconfig.Module{"probe": {DiskInodes: 5000}}
	wantBytes, wantInodes := cfg.EffectiveDisk("probe")
	scores := map[string]float64{}
	for _, backend := range []string{StorageProject, StorageImage, StorageNone} {
		p, err := compileStorageFor(t, cfg, backend)
		if err != nil {
			t.Fatalf("backend %q: %v", backend, err)
		}
		st := p.Storage
		if st.Bytes.Value != wantBytes || st.Inodes.Value != wantInodes || st.Backend != backend {
			t.Errorf("backend %q: storage %+v, want %d bytes, %d inodes", backend, st, wantBytes, wantInodes)
		}
		if st.Bytes.Why.Source != SourceOperator || st.Why.Reason == "" {
			t.Errorf("backend %q: provenance %+v / %+v", backend, st.Bytes.Why, st.Why)
		}
		var text, js strings.Builder
		r := NewReport(p, &manifest.Manifest{Name: "probe"}, cfg, nil)
		if err := r.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`disk /data\s+67108864 bytes, 5000 inodes`).MatchString(text.String()) {
			t.Errorf("backend %q: text lacks the limit:\n%s", backend, text.String())
		}
		var parsed struct {
			Policy struct {
				Storage struct {
					Backend string
					Bytes   struct{ Value int64 }
				}
			}
			Controls []Control
		}
		if err := json.Unmarshal([]byte(js.String()), &parsed); err != nil {
			t.Fatal(err)
		}
		if parsed.Policy.Storage.Backend != backend || parsed.Policy.Storage.Bytes.Value != wantBytes {
			t.Errorf("backend %q: json storage %+v", backend, parsed.Policy.Storage)
		}
		var row *Control
		for i, c := range parsed.Controls {
			if c.Name == "disk quota" {
				row = &parsed.Controls[i]
			}
		}
		switch {
		case row == nil:
			t.Errorf("backend %q: no disk quota control", backend)
		case backend == StorageNone && (row.Verdict != VerdictExposed || !strings.Contains(row.Value, "NOT ENFORCED")):
			t.Errorf("an unenforced quota reads %+v", row)
		case backend != StorageNone && row.Verdict != VerdictOK:
			t.Errorf("backend %q: %+v", backend, row)
		}
		if backend == StorageNone && !strings.Contains(text.String(), "none (NOT ENFORCED)") {
			t.Errorf("text does not flag the missing backend:\n%s", text.String())
		}
		scores[backend] = r.Score
	}
	if scores[StorageNone] <= scores[StorageImage] || scores[StorageImage] != scores[StorageProject] {
		t.Errorf("scores %v: an unenforced quota must score worse, the two backends alike", scores)
	}
}

func TestStorageBackendIsChecked(t *testing.T) {
	_, err := compileStorageFor(t, permissive(), "xfs")
	if err == nil || !strings.Contains(err.Error(), `storage_backend "xfs"`) {
		t.Fatalf("unknown backend: %v", err)
	}
}

func TestDiffFlagsLostQuota(t *testing.T) {
	enforced, err := compileStorageFor(t, permissive(), StorageImage)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := compileStorageFor(t, permissive(), StorageNone)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(enforced, lost); len(d.Wider) != 1 || !strings.Contains(d.Wider[0], "disk quota backend image -> none") {
		t.Errorf("losing the quota: %+v", d)
	}
	bigger := permissive()
	bigger.Sandbox.DiskBytes = 4 << 30
	roomy, err := compileStorageFor(t, bigger, StorageImage)
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(enforced, roomy); len(d.Wider) != 1 || !strings.Contains(d.Wider[0], "disk_bytes") {
		t.Errorf("raising disk bytes: %+v", d)
	}
}
