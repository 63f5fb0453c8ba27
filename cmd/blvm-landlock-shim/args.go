package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// config is the parsed command line.
type config struct {
	minABI int
	rules  []pathRule
	scopes uint64 // ll.Scope* bits
	argv   []string
}

// pathRule grants access (ll.AccessFS* bits) beneath path.
type pathRule struct {
	access uint64
	path   string
}

// accessRight maps a Landlock right name (as policy.PathRule and go-landlock
// spell it) to its bit. A name it does not know is an error, never ignored.
func accessRight(name string) (uint64, error) {
	switch name {
	case "execute":
		return ll.AccessFSExecute, nil
	case "write_file":
		return ll.AccessFSWriteFile, nil
	case "read_file":
		return ll.AccessFSReadFile, nil
	case "read_dir":
		return ll.AccessFSReadDir, nil
	case "remove_dir":
		return ll.AccessFSRemoveDir, nil
	case "remove_file":
		return ll.AccessFSRemoveFile, nil
	case "make_char":
		return ll.AccessFSMakeChar, nil
	case "make_dir":
		return ll.AccessFSMakeDir, nil
	case "make_reg":
		return ll.AccessFSMakeReg, nil
	case "make_sock":
		return ll.AccessFSMakeSock, nil
	case "make_fifo":
		return ll.AccessFSMakeFifo, nil
	case "make_block":
		return ll.AccessFSMakeBlock, nil
	case "make_sym":
		return ll.AccessFSMakeSym, nil
	case "refer":
		return ll.AccessFSRefer, nil
	case "truncate":
		return ll.AccessFSTruncate, nil
	case "ioctl_dev":
		return ll.AccessFSIoctlDev, nil
	case "resolve_unix":
		return ll.AccessFSResolveUnix, nil
	}
	return 0, fmt.Errorf("unknown Landlock access right %q", name)
}

func scopeBit(name string) (uint64, error) {
	switch name {
	case "abstract_unix_socket":
		return ll.ScopeAbstractUnixSocket, nil
	case "signal":
		return ll.ScopeSignal, nil
	}
	return 0, fmt.Errorf("unknown Landlock scope %q", name)
}

// parseArgs reads the command line (without argv[0]).
func parseArgs(args []string) (config, error) {
	var c config
	seenABI := false
	for i := 0; i < len(args); i++ {
		flag := args[i]
		if flag == "--" {
			c.argv = args[i+1:]
			break
		}
		if i+1 >= len(args) {
			return config{}, fmt.Errorf("%s needs a value", flag)
		}
		i++
		val := args[i]
		switch flag {
		case "--min-abi":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				return config{}, fmt.Errorf("--min-abi %q: want a Landlock ABI version >= 1", val)
			}
			c.minABI, seenABI = n, true
		case "--allow":
			rights, path, ok := strings.Cut(val, ":")
			if !ok || path == "" || rights == "" {
				return config{}, fmt.Errorf("--allow %q: want RIGHT[,RIGHT...]:PATH", val)
			}
			var r pathRule
			for _, name := range strings.Split(rights, ",") {
				bit, err := accessRight(name)
				if err != nil {
					return config{}, fmt.Errorf("--allow %q: %w", val, err)
				}
				r.access |= bit
			}
			r.path = path
			c.rules = append(c.rules, r)
		case "--scope":
			bit, err := scopeBit(val)
			if err != nil {
				return config{}, err
			}
			c.scopes |= bit
		default:
			return config{}, fmt.Errorf("unknown flag %q", flag)
		}
	}
	if !seenABI {
		return config{}, errors.New("--min-abi is required")
	}
	if len(c.argv) == 0 {
		return config{}, errors.New("no program to run after --")
	}
	return c, nil
}
