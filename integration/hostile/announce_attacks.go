package main

import (
	"fmt"
	"os"
	"time"
)

// "announce" prints the module's name and version on stdout, where the
// daemon's `logs` shows it, and then sleeps for arg: a module that says
// which build of it runs.
func init() {
	attacks["announce"] = func(r *result, arg string) {
		fmt.Printf("running %s %s\n", os.Getenv("BLVM_MODULE_NAME"), os.Getenv("BLVM_MODULE_VERSION"))
		os.Stdout.Sync()
		d, _ := time.ParseDuration(arg)
		time.Sleep(d)
		r.Errno = "ok"
	}
}
