package nodeconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// Backend kinds.
const (
	BackendDevchain = "devchain"
	BackendBtcd     = "btcd"
	BackendBitcoind = "bitcoind"
)

// BackendKinds are the values [backend] kind accepts.
var BackendKinds = []string{BackendDevchain, BackendBtcd, BackendBitcoind}

// Backend is [backend]: the node behind the hub. The default is the
// embedded dev chain. Credentials are read from files when the daemon
// connects (Credentials), never stored in the config or logged.
type Backend struct {
	Kind string `toml:"kind"`
	// URL is btcd's RPC "host:port", or bitcoind's "http://host:port".
	URL string `toml:"url"`
	// CookieFile ("user:password" on one line, as both nodes write it), or
	// User with PasswordFile.
	CookieFile   string `toml:"cookie_file"`
	User         string `toml:"user"`
	PasswordFile string `toml:"password_file"`
	// TLSCert is btcd's rpc.cert; TLSDisable is allowed only for a
	// loopback url.
	TLSCert    string `toml:"tls_cert"`
	TLSDisable bool   `toml:"tls_disable"`
	// ZMQ endpoints of bitcoind ("tcp://127.0.0.1:28332"): wake-ups only;
	// without them the driver polls.
	ZMQHashBlock string `toml:"zmq_hashblock"`
	ZMQSequence  string `toml:"zmq_sequence"`
	// CallTimeout bounds every RPC (default 10 s); PollInterval is how
	// often the tip is reconciled without a notification (default 10 s).
	CallTimeout  time.Duration `toml:"call_timeout"`
	PollInterval time.Duration `toml:"poll_interval"`
}

var backendKeys = []string{"kind", "url", "cookie_file", "user", "password_file", "tls_cert", "tls_disable", "zmq_hashblock", "zmq_sequence", "call_timeout", "poll_interval"}

func (c *Config) validateBackend(v *validator) {
	b := c.Backend
	if b.Kind != "" && !slices.Contains(BackendKinds, b.Kind) {
		v.add("backend.kind", "%q: want one of %s", b.Kind, strings.Join(BackendKinds, ", "))
		return
	}
	if b.Kind == "" || b.Kind == BackendDevchain {
		for _, k := range backendKeys[1:] {
			if v.defined("backend", k) {
				v.add("backend."+k, "applies only to kind = \"btcd\" or \"bitcoind\"; the embedded dev chain has no settings here")
			}
		}
		return
	}
	host := ""
	switch {
	case b.URL == "":
		v.add("backend.url", "required for kind = %q", b.Kind)
	case b.Kind == BackendBtcd:
		h, port, err := net.SplitHostPort(b.URL)
		if err != nil || port == "" || strings.Contains(b.URL, "/") {
			v.add("backend.url", "%q: want btcd's RPC listener as host:port, e.g. 127.0.0.1:18334", b.URL)
		}
		host = h
	default:
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" || u.User != nil {
			v.add("backend.url", "%q: want http://host:port, with credentials in cookie_file or password_file rather than the url", b.URL)
		} else {
			host = u.Hostname()
		}
	}
	for _, p := range []struct{ key, value string }{{"cookie_file", b.CookieFile}, {"password_file", b.PasswordFile}, {"tls_cert", b.TLSCert}} {
		if p.value != "" && (!path.IsAbs(p.value) || path.Clean(p.value) != p.value) {
			v.add("backend."+p.key, "%q: want a clean absolute path", p.value)
		}
	}
	switch {
	case b.CookieFile != "" && (b.User != "" || b.PasswordFile != ""):
		v.add("backend.cookie_file", "set cookie_file or user with password_file, not both")
	case b.CookieFile == "" && (b.User == "" || b.PasswordFile == ""):
		v.add("backend.user", "credentials required: cookie_file, or user with password_file")
	}
	if b.Kind == BackendBtcd {
		switch {
		case b.TLSDisable && b.TLSCert != "":
			v.add("backend.tls_disable", "tls_disable with tls_cert %q: choose one", b.TLSCert)
		case b.TLSDisable && host != "" && !isLoopback(host):
			v.add("backend.tls_disable", "TLS may be disabled only for a loopback url, not %q", b.URL)
		case !b.TLSDisable && b.TLSCert == "":
			v.add("backend.tls_cert", "required for btcd (its rpc.cert), unless tls_disable for a loopback url")
		}
		for _, k := range []string{"zmq_hashblock", "zmq_sequence"} {
			if v.defined("backend", k) {
				v.add("backend."+k, "applies only to kind = \"bitcoind\"")
			}
		}
	} else {
		for _, k := range []string{"tls_cert", "tls_disable"} {
			if v.defined("backend", k) {
				v.add("backend."+k, "applies only to kind = \"btcd\" (use an https url for bitcoind)")
			}
		}
		for _, z := range []struct{ key, value string }{{"zmq_hashblock", b.ZMQHashBlock}, {"zmq_sequence", b.ZMQSequence}} {
			if z.value == "" {
				continue
			}
			u, err := url.Parse(z.value)
			if err != nil || u.Scheme != "tcp" || u.Port() == "" {
				v.add("backend."+z.key, "%q: want a ZMQ endpoint such as tcp://127.0.0.1:28332", z.value)
			}
		}
	}
	for _, d := range []struct {
		key   string
		value time.Duration
	}{{"call_timeout", b.CallTimeout}, {"poll_interval", b.PollInterval}} {
		if v.defined("backend", d.key) && d.value <= 0 {
			v.add("backend."+d.key, "%s: must be positive", d.value)
		}
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (b *Backend) fillDefaults() {
	setString(&b.Kind, BackendDevchain)
}

// Credentials reads the RPC user and password from the cookie file or the
// password file. Errors name the file, never its contents.
func (b *Backend) Credentials() (user, pass string, err error) {
	if b.CookieFile != "" {
		data, err := os.ReadFile(b.CookieFile)
		if err != nil {
			return "", "", fmt.Errorf("[backend] cookie_file: %w", err)
		}
		u, p, ok := strings.Cut(strings.TrimSpace(string(data)), ":")
		if !ok || u == "" || p == "" {
			return "", "", fmt.Errorf("[backend] cookie_file %s: not one line of user:password", b.CookieFile)
		}
		return u, p, nil
	}
	if b.PasswordFile == "" {
		return "", "", errors.New("[backend] no credentials: set cookie_file, or user with password_file")
	}
	data, err := os.ReadFile(b.PasswordFile)
	if err != nil {
		return "", "", fmt.Errorf("[backend] password_file: %w", err)
	}
	p := strings.TrimRight(string(data), "\r\n")
	if p == "" || strings.ContainsAny(p, "\r\n") {
		return "", "", fmt.Errorf("[backend] password_file %s: want the password alone on one line", b.PasswordFile)
	}
	return b.User, p, nil
}
