// Command blvm-landlock-shim is the first program inside a module's
// container. libcontainer does not know Landlock, so this static shim
// applies the module's Landlock ruleset, stacks a seccomp filter that kills
// the whole process on a foreign-arch or x32 syscall, and then execs the
// module with only the BLVM_* variables of its environment.
//
//	blvm-landlock-shim --min-abi N [--allow RIGHTS:PATH]... [--scope NAME]... -- PROGRAM [ARG]...
//
// It never degrades silently: a kernel below --min-abi, an unknown right or
// scope, or a failing rule is a refusal with exit status 126, and the module
// does not start. Build it with CGO_ENABLED=0.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
)

// exitRefused is the status when the shim will not start the module, the
// shell's "found but cannot execute".
const exitRefused = 126

func main() {
	// The stacked seccomp filter is per thread: install it and execve from
	// the same OS thread so the module inherits it.
	runtime.LockOSThread()
	cfg, err := parseArgs(os.Args[1:])
	if err != nil {
		refuse(err)
	}
	if err := apply(cfg); err != nil {
		refuse(err)
	}
	err = syscall.Exec(cfg.argv[0], cfg.argv, moduleEnv(os.Environ()))
	refuse(fmt.Errorf("exec %s: %w", cfg.argv[0], err))
}

// moduleEnv keeps only the documented BLVM_* variables: libcontainer adds
// HOME (and a caller could add more), and modules must see nothing else.
func moduleEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "BLVM_") {
			out = append(out, kv)
		}
	}
	return out
}

func refuse(err error) {
	fmt.Fprintf(os.Stderr, "blvm-landlock-shim: refusing to start the module: %v\n", err)
	os.Exit(exitRefused)
}
