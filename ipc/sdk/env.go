package sdk

import (
	"fmt"
	"os"

	"github.com/BurntSushi/toml"
)

// The environment the runtime gives a module (policy/compile.go, compileEnv),
// and the in-container paths it mounts. A test checks them against policy.
const (
	EnvModuleName    = "BLVM_MODULE_NAME"
	EnvModuleVersion = "BLVM_MODULE_VERSION"
	EnvSocket        = "BLVM_SOCKET"
	EnvConfig        = "BLVM_CONFIG"
	EnvDataDir       = "BLVM_DATA_DIR"
	EnvNetwork       = "BLVM_NETWORK"

	DefaultSocket  = "/run/blvm/hub.sock"
	DefaultConfig  = "/etc/module/config.toml"
	DefaultDataDir = "/data"
)

// ConfigPath is the module's config file: $BLVM_CONFIG, else /etc/module/config.toml.
func ConfigPath() string {
	return firstNonEmpty(os.Getenv(EnvConfig), DefaultConfig)
}

// LoadConfig decodes the TOML config at path (empty means ConfigPath())
// into v. The file is the runtime's merge of the module's config.toml and
// the node's [modules.<name>] table, so keys v does not name are not an
// error. A missing file is an error wrapping fs.ErrNotExist; a module with
// defaults for everything may ignore it.
func LoadConfig(path string, v any) error {
	if path == "" {
		path = ConfigPath()
	}
	if _, err := toml.DecodeFile(path, v); err != nil {
		return fmt.Errorf("load config %s: %w", path, err)
	}
	return nil
}

// DataDir is the module's own read-write directory: $BLVM_DATA_DIR, else /data.
func DataDir() string {
	return firstNonEmpty(os.Getenv(EnvDataDir), DefaultDataDir)
}

// Network is the chain the node runs ("regtest", ...) from $BLVM_NETWORK;
// Welcome().Network says the same once connected.
func Network() string {
	return os.Getenv(EnvNetwork)
}
