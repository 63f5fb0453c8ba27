package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

// event-spam asks, in N (arg) events.Subscribe requests, for 256 made-up
// event types each, none asked before: every one reaches the hub's ACL
// decision (and record's observer) before the hub's own subscription bound
// refuses the request. Count is the requests answered; Info the last code.
func init() {
	attacks["event-spam"] = func(r *result, arg string) {
		n, _ := strconv.Atoi(arg)
		c, err := hubDial(os.Getenv("BLVM_SOCKET"), os.Getenv("BLVM_MODULE_NAME"), os.Getenv("BLVM_MODULE_VERSION"))
		if err != nil {
			r.Errno = "connect: " + err.Error()
			return
		}
		defer c.Close()
		for i := range n {
			types := make([]string, 256)
			for j := range types {
				types[j] = fmt.Sprintf("spam.T%d_%d", i, j)
			}
			id := uint64(i + 1)
			if err := c.request(id, "events.Subscribe", &pb.EventTypes{Types: types}); err != nil {
				r.Errno = "send: " + err.Error()
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				env, err := ipc.ReadEnvelope(c.br, ipc.HardMaxFrame)
				if err != nil {
					r.Errno = "read: " + err.Error()
					return
				}
				if resp := env.GetResponse(); resp != nil && resp.Id == id {
					r.Info["last"] = resp.Code.String()
					break
				}
			}
			r.Count++
		}
		r.Errno = "ok"
	}
}
