package sdk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The module's own database. The runtime gives every module a private
// read-write /data; its database lives in /data/db. Its format is the
// config key database_backend: the module's config.toml may set it, the
// operator's [modules.<name>] may override it, and otherwise the runtime
// fills in the node's [node] database_backend when it merges the config
// (loader.MergeConfig), so the key reaches the module only through the
// merged config file, never the environment.
const (
	// DatabaseBackendKey is the merged config's key for the format.
	DatabaseBackendKey = "database_backend"
	// BackendBbolt is the one format this SDK opens, and the default when
	// the merged config has no database_backend.
	BackendBbolt = "bbolt"
	// DefaultDBName is the database file OpenDB opens for an empty name.
	DefaultDBName = "module.db"
	// dbLockTimeout bounds the wait for bbolt's file lock: a second
	// process holding it (a leftover child) is an error, not a hang.
	dbLockTimeout = 2 * time.Second
)

// DBDir is where the module's database lives: DataDir()/db.
func DBDir() string { return filepath.Join(DataDir(), "db") }

// DatabaseBackend is the database format the merged config asks for (the
// module's own database_backend, else the operator's, else the node's),
// or BackendBbolt when none is set or the module has no config file.
func DatabaseBackend() (string, error) {
	var c struct {
		Backend string `toml:"database_backend"`
	}
	if err := LoadConfig("", &c); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if c.Backend == "" {
		return BackendBbolt, nil
	}
	return c.Backend, nil
}

// OpenDB opens (creating it if needed) the module's database file name in
// DBDir(); "" means DefaultDBName. It reads the format from the merged
// config first and refuses one it does not speak, naming it: a node whose
// [node] database_backend is, say, "redb" gives every module that format
// unless the module's config.toml sets database_backend = "bbolt", which
// is what a Go module on this SDK should ship. Close the database before
// the module returns: bbolt holds a file lock.
func OpenDB(name string) (*bolt.DB, error) {
	if name == "" {
		name = DefaultDBName
	}
	if name != filepath.Base(name) || name == "." || name == ".." {
		return nil, fmt.Errorf("open database: name %q: want a file name, not a path", name)
	}
	backend, err := DatabaseBackend()
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if backend != BackendBbolt {
		// The merged file cannot tell who set it: the module's config.toml,
		// the operator's [modules.NAME] (which wins) or the node's [node].
		return nil, fmt.Errorf("open database: %s: database_backend %q is not supported by the Go SDK (it opens %q): the module's config.toml should set database_backend = %q, and an operator's [modules.%s] table must not override it",
			ConfigPath(), backend, BackendBbolt, BackendBbolt, firstNonEmpty(os.Getenv(EnvModuleName), "NAME"))
	}
	dir := DBDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	path := filepath.Join(dir, name)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: dbLockTimeout})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return db, nil
}
