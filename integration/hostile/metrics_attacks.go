package main

// What the metrics must show about a module: requests for methods it
// invents (a bounded "other" label, not one series per name), a failed
// handshake, and CPU throttling under its quota.

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func init() { attacks["metrics-spray"] = metricsSpray }

// metricsSpray sends arg (default 50) requests for invented methods, a few
// real ones and module calls to invented providers on a connection of its
// own; opens a connection that sends a request before its Hello; spins
// for a second under its CPU quota; prints its result; then stays up so
// the daemon's figures can be read while it runs.
func metricsSpray(r *result, arg string) {
	n, err := strconv.Atoi(arg)
	if err != nil || n <= 0 {
		n = 50
	}
	sock, name := os.Getenv("BLVM_SOCKET"), os.Getenv("BLVM_MODULE_NAME")
	c, err := hubDial(sock, name, "1.0.0")
	if err != nil {
		r.Errno = err.Error()
		return
	}
	var codes sync.Map
	go c.drain(&codes)
	id := uint64(1)
	for i := 0; i < n; i++ {
		c.request(id, fmt.Sprintf("invented.Method%d", i), nil)
		id++
		c.request(id, fmt.Sprintf("modules.Call:nobody-%d", i), nil)
		id++
	}
	for i := 0; i < 5; i++ {
		c.request(id, "chain.GetChainTip", nil)
		id++
	}
	// Request first: the hub closes this one as a failed handshake.
	if bad, err := hubConnect(sock); err == nil {
		bad.request(1, "chain.GetChainTip", nil)
		time.Sleep(200 * time.Millisecond)
		bad.Close()
	}
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		r.Count++
	}
	time.Sleep(500 * time.Millisecond) // the answers arrive
	codes.Range(func(k, v any) bool {
		r.Info[k.(string)] = strconv.FormatInt(v.(*atomic.Int64).Load(), 10)
		return true
	})
	r.Errno = "ok"
	json.NewEncoder(os.Stdout).Encode(r)
	select {} // stay up; the runtime stops it
}
