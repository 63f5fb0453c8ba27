package sdk

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func TestOpenDB(t *testing.T) {
	tests := []struct {
		name    string
		config  string // "" : no config file at all
		dbName  string
		wantErr string
		file    string
	}{
		{name: "no config: bbolt", dbName: "", file: "db/module.db"},
		{name: "bbolt set", config: "database_backend = \"bbolt\"\n", dbName: "blocks.db", file: "db/blocks.db"},
		{name: "other keys only", config: "recent = 3\n", file: "db/module.db"},
		{name: "inherited redb", config: "database_backend = \"redb\"\n", wantErr: `database_backend "redb" is not supported by the Go SDK (it opens "bbolt"): the module's config.toml should set database_backend = "bbolt", and an operator's [modules.`},
		{name: "a path", dbName: "../escape.db", wantErr: `name "../escape.db": want a file name`},
		{name: "bad toml", config: "database_backend = \n", wantErr: "load config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			cfg := filepath.Join(t.TempDir(), "config.toml")
			if tt.config != "" {
				os.WriteFile(cfg, []byte(tt.config), 0o644)
			}
			t.Setenv(EnvDataDir, data)
			t.Setenv(EnvConfig, cfg)
			db, err := OpenDB(tt.dbName)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.config != "" && !strings.Contains(err.Error(), cfg) && strings.Contains(tt.wantErr, "not supported") {
					t.Errorf("err %q does not name the config file", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			st, err := os.Stat(filepath.Join(data, tt.file))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("database file %s: %v %v", tt.file, st, err)
			}
			if st, _ := os.Stat(filepath.Join(data, "db")); st.Mode().Perm() != 0o700 {
				t.Errorf("db dir mode %v", st.Mode())
			}
		})
	}
}

// A second open while the first holds bbolt's lock fails within the lock
// timeout instead of hanging.
func TestOpenDBLocked(t *testing.T) {
	t.Setenv(EnvDataDir, t.TempDir())
	t.Setenv(EnvConfig, filepath.Join(t.TempDir(), "none.toml"))
	db, err := OpenDB("")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := OpenDB(""); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("second open: %v, want a timeout", err)
	}
}
