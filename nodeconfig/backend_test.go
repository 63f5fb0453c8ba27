package nodeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBackendDefaultIsDevchain(t *testing.T) {
	c, err := ParseBytes("node.toml", nil)
	if err != nil || c.Backend.Kind != BackendDevchain {
		t.Fatalf("kind %q, %v", c.Backend.Kind, err)
	}
}

func TestBackendBtcd(t *testing.T) {
	src := "[backend]\nkind = \"btcd\"\nurl = \"127.0.0.1:18334\"\nuser = \"rpc\"\npassword_file = \"/etc/blvm/btcd.pass\"\ntls_cert = \"/etc/blvm/rpc.cert\"\ncall_timeout = \"3s\"\n"
	c, err := ParseBytes("node.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Backend; b.Kind != "btcd" || b.URL != "127.0.0.1:18334" || b.TLSCert != "/etc/blvm/rpc.cert" || b.CallTimeout.Seconds() != 3 {
		t.Fatalf("%+v", b)
	}
}

// Every mistake names file:line, the field and the value.
func TestBackendProblems(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"[backend]\nkind = \"lnd\"\n", `node.toml:2: backend.kind: "lnd": want one of devchain, btcd, bitcoind`},
		{"[backend]\nurl = \"127.0.0.1:1\"\n", "node.toml:2: backend.url: applies only to"},
		{"[backend]\nkind = \"btcd\"\n", "backend.url: required"},
		{"[backend]\nkind = \"btcd\"\nurl = \"http://127.0.0.1:1\"\ncookie_file = \"/c\"\ntls_disable = true\n", `node.toml:3: backend.url: "http://127.0.0.1:1": want btcd's RPC listener as host:port`},
		{"[backend]\nkind = \"btcd\"\nurl = \"10.0.0.2:18334\"\ncookie_file = \"/c\"\ntls_disable = true\n", `node.toml:5: backend.tls_disable: TLS may be disabled only for a loopback url, not "10.0.0.2:18334"`},
		{"[backend]\nkind = \"btcd\"\nurl = \"127.0.0.1:18334\"\ncookie_file = \"/c\"\n", "backend.tls_cert: required for btcd"},
		{"[backend]\nkind = \"btcd\"\nurl = \"127.0.0.1:18334\"\ntls_disable = true\n", "backend.user: credentials required"},
		{"[backend]\nkind = \"btcd\"\nurl = \"127.0.0.1:18334\"\ncookie_file = \"c\"\ntls_disable = true\n", `node.toml:4: backend.cookie_file: "c": want a clean absolute path`},
		{"[backend]\nkind = \"bitcoind\"\nurl = \"http://u:p@127.0.0.1:8332\"\ncookie_file = \"/c\"\n", "rather than the url"},
		{"[backend]\nkind = \"bitcoind\"\nurl = \"http://127.0.0.1:8332\"\ncookie_file = \"/c\"\nzmq_sequence = \"udp://x\"\n", `node.toml:5: backend.zmq_sequence: "udp://x"`},
		{"[backend]\nkind = \"bitcoind\"\nurl = \"http://127.0.0.1:8332\"\ncookie_file = \"/c\"\ntls_cert = \"/x\"\n", `node.toml:5: backend.tls_cert: applies only to kind = "btcd"`},
		{"[backend]\nkind = \"btcd\"\nurl = \"127.0.0.1:1\"\ncookie_file = \"/c\"\ntls_disable = true\npoll_interval = \"-1s\"\n", "backend.poll_interval: -1s: must be positive"},
		{"[backend]\nkind = \"btcd\"\nurll = \"x\"\n", "urll"},
	} {
		_, err := ParseBytes("node.toml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %q", tc.src, err, tc.want)
		}
	}
}

func TestBackendCredentials(t *testing.T) {
	dir := t.TempDir()
	cookie := filepath.Join(dir, ".cookie")
	os.WriteFile(cookie, []byte("__cookie__:s3cret\n"), 0o600)
	b := Backend{CookieFile: cookie}
	if u, p, err := b.Credentials(); err != nil || u != "__cookie__" || p != "s3cret" {
		t.Fatalf("cookie: %q %q %v", u, p, err)
	}
	pass := filepath.Join(dir, "pass")
	os.WriteFile(pass, []byte("hunter2\n"), 0o600)
	b = Backend{User: "rpc", PasswordFile: pass}
	if u, p, err := b.Credentials(); err != nil || u != "rpc" || p != "hunter2" {
		t.Fatalf("password file: %q %q %v", u, p, err)
	}
	os.WriteFile(cookie, []byte("nocolon-s3cret"), 0o600)
	bad := Backend{CookieFile: cookie}
	_, _, err := bad.Credentials()
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), cookie) {
		t.Fatalf("bad cookie error must name the file, not the secret: %v", err)
	}
}
