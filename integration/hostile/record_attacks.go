package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/blvm/blvm-sandbox/ipc"
	"github.com/blvm/blvm-sandbox/ipc/pb"
)

func init() { attacks["uses"] = uses }

// uses makes the calls its argument lists, in order, for the record tests:
// comma-separated steps "method=NAME*N" (N hub calls, without params),
// "event=TYPE" (one events.Subscribe), "syscall=NAME*N" (mlock or ptrace,
// N times; its time per call goes in Info too), "write=DIR:BYTES" and
// "sleep=DURATION". Info gets each step's answer: the hub's code, or the errno.
func uses(r *result, arg string) {
	c, err := hubDial(os.Getenv("BLVM_SOCKET"), os.Getenv("BLVM_MODULE_NAME"), os.Getenv("BLVM_MODULE_VERSION"))
	if err != nil {
		r.Errno = "connect: " + err.Error()
		return
	}
	defer c.Close()
	id := uint64(0)
	call := func(method string, params *pb.EventTypes) string {
		id++
		var err error
		if params != nil {
			err = c.request(id, method, params)
		} else {
			err = c.request(id, method, nil)
		}
		if err != nil {
			return "send: " + err.Error()
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		defer c.SetReadDeadline(time.Time{})
		for {
			env, err := ipc.ReadEnvelope(c.br, ipc.HardMaxFrame)
			if err != nil {
				return "read: " + err.Error()
			}
			if resp := env.GetResponse(); resp != nil && resp.Id == id {
				return resp.Code.String()
			}
		}
	}
	for _, step := range strings.Split(arg, ",") {
		kind, what, _ := strings.Cut(step, "=")
		switch kind {
		case "method":
			name, n := what, 1
			if m, count, ok := strings.Cut(what, "*"); ok {
				name = m
				n, _ = strconv.Atoi(count)
			}
			for range n {
				r.Info[step] = call(name, nil)
			}
		case "event":
			r.Info[step] = call("events.Subscribe", &pb.EventTypes{Types: []string{what}})
		case "syscall":
			name, n := what, 1
			if m, count, ok := strings.Cut(what, "*"); ok {
				name = m
				n, _ = strconv.Atoi(count)
			}
			start := time.Now()
			for range n {
				r.Info[step] = syscallOnce(name)
			}
			r.Info[step+" ns/call"] = strconv.FormatInt(time.Since(start).Nanoseconds()/int64(max(n, 1)), 10)
		case "sleep":
			time.Sleep(duration(what))
		case "write":
			// write=DIR:BYTES, a file of that size under /data or /tmp.
			dir, size, _ := strings.Cut(what, ":")
			n, _ := strconv.Atoi(size)
			err := os.WriteFile(dir+"/record-probe", make([]byte, n), 0o600)
			r.Info[step] = errnoName(err)
		default:
			r.Errno = fmt.Sprintf("unknown step %q", step)
			return
		}
	}
	r.Errno = "ok"
}

// syscallOnce makes one syscall outside (mlock) or refused by (ptrace) the
// base allowlist and says what it returned.
func syscallOnce(name string) string {
	var e unix.Errno
	switch name {
	case "mlock":
		page := make([]byte, 4096)
		_, _, e = unix.RawSyscall(unix.SYS_MLOCK, uintptr(unsafe.Pointer(&page[0])), uintptr(len(page)), 0)
	case "ptrace":
		_, _, e = unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	default:
		return "unknown syscall " + name
	}
	if e == 0 {
		return "ok"
	}
	return errnoName(e)
}
