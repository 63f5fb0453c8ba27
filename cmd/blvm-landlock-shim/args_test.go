package main

import (
	"reflect"
	"strings"
	"testing"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

func TestParseArgs(t *testing.T) {
	got, err := parseArgs(strings.Fields(
		"--min-abi 6 --allow execute,read_file:/module/x --allow read_file,write_file:/a:b " +
			"--scope abstract_unix_socket --scope signal -- /module/x --flag"))
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		minABI: 6,
		rules: []pathRule{
			{access: ll.AccessFSExecute | ll.AccessFSReadFile, path: "/module/x"},
			{access: ll.AccessFSReadFile | ll.AccessFSWriteFile, path: "/a:b"},
		},
		scopes: ll.ScopeAbstractUnixSocket | ll.ScopeSignal,
		argv:   []string{"/module/x", "--flag"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseArgs:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseArgsEveryRight(t *testing.T) {
	names := []string{"execute", "write_file", "read_file", "read_dir", "remove_dir", "remove_file",
		"make_char", "make_dir", "make_reg", "make_sock", "make_fifo", "make_block", "make_sym",
		"refer", "truncate", "ioctl_dev", "resolve_unix"}
	c, err := parseArgs([]string{"--min-abi", "1", "--allow", strings.Join(names, ",") + ":/", "--", "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(1)<<len(names) - 1; c.rules[0].access != want {
		t.Fatalf("access = %#x, want every bit %#x", c.rules[0].access, want)
	}
}

func TestParseArgsRefuses(t *testing.T) {
	for _, tc := range []struct{ args, wantErr string }{
		{"-- /x", "--min-abi is required"},
		{"--min-abi 6", "no program"},
		{"--min-abi 6 --", "no program"},
		{"--min-abi zero -- /x", "want a Landlock ABI"},
		{"--min-abi 0 -- /x", "want a Landlock ABI"},
		{"--min-abi 6 --allow read_file -- /x", "RIGHT[,RIGHT...]:PATH"},
		{"--min-abi 6 --allow :/x -- /x", "RIGHT[,RIGHT...]:PATH"},
		{"--min-abi 6 --allow read:/x -- /x", `unknown Landlock access right "read"`},
		{"--min-abi 6 --scope pid -- /x", `unknown Landlock scope "pid"`},
		{"--min-abi 6 --rw /x -- /x", `unknown flag "--rw"`},
		{"--min-abi", "needs a value"},
	} {
		_, err := parseArgs(strings.Fields(tc.args))
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("parseArgs(%q) = %v, want error containing %q", tc.args, err, tc.wantErr)
		}
	}
}

func TestHandledRights(t *testing.T) {
	h6, err := handledRights(6)
	if err != nil {
		t.Fatal(err)
	}
	if h6&ll.AccessFSIoctlDev == 0 || h6&ll.AccessFSResolveUnix != 0 {
		t.Fatalf("ABI 6 handles %#x: want ioctl_dev (ABI 5) and not resolve_unix (ABI 9)", h6)
	}
	if _, err := handledRights(99); err == nil {
		t.Fatal("handledRights(99) accepted an ABI the shim does not know")
	}
}

func TestModuleEnvKeepsOnlyBLVM(t *testing.T) {
	got := moduleEnv([]string{"HOME=/", "BLVM_SOCKET=/run/blvm/hub.sock", "PATH=/bin", "BLVMX=1", "BLVM_DATA_DIR=/data", "LD_PRELOAD=/x.so"})
	want := []string{"BLVM_SOCKET=/run/blvm/hub.sock", "BLVM_DATA_DIR=/data"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("moduleEnv = %q, want %q", got, want)
	}
}
