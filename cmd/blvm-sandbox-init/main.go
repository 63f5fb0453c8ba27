// Command blvm-sandbox-init creates one module container for the runtime
// (its "create" argument, see runtime/launch) and is that container's init
// (libcontainer re-executes it with "init"). It links libcontainer and
// nothing of the daemon, so every container start runs only libcontainer's
// package initialisers; deps_test.go keeps it that way.
package main

import (
	"fmt"
	"os"

	// Must come first: for "init" it never returns.
	_ "github.com/blvm/blvm-sandbox/runtime/containerinit"
	"github.com/blvm/blvm-sandbox/runtime/launch"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != launch.CreateArg {
		fmt.Fprintf(os.Stderr, "usage: %s %s (run by blvm-sandbox, a request on stdin)\n", os.Args[0], launch.CreateArg)
		os.Exit(2)
	}
	os.Exit(launch.Serve(os.Stdin, os.Stdout))
}
