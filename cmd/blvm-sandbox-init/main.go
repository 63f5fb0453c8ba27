// Command blvm-sandbox-init creates module containers for the runtime (its
// "serve" argument, see runtime/launch) and is each container's init
// (libcontainer re-executes it with "init"). It links libcontainer and
// nothing of the daemon, so every container start runs only libcontainer's
// package initialisers; deps_test.go keeps it that way.
package main

import (
	"fmt"
	"net"
	"os"

	// Must come first: for "init" it never returns.
	_ "github.com/blvm/blvm-sandbox/runtime/containerinit"
	"github.com/blvm/blvm-sandbox/runtime/launch"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != launch.ServeArg {
		fmt.Fprintf(os.Stderr, "usage: %s %s (run by the blvm-sandbox runtime, its socket at fd %d)\n", os.Args[0], launch.ServeArg, launch.SocketFd)
		os.Exit(2)
	}
	f := os.NewFile(launch.SocketFd, "runtime")
	c, err := net.FileConn(f)
	f.Close()
	uc, ok := c.(*net.UnixConn)
	if err != nil || !ok {
		fmt.Fprintf(os.Stderr, "%s: fd %d is not the runtime's socket: %v\n", os.Args[0], launch.SocketFd, err)
		os.Exit(2)
	}
	if err := launch.Serve(uc); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[0], err)
		os.Exit(1)
	}
}
