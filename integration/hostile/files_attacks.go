package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func init() { attacks["chmod-own"] = chmodOwn }

// chmodOwn tries to open up the module's own files: /data, a file in it,
// the hub socket and the config to 0777 (the module owns their inodes;
// seccomp refuses such modes). The first run (no /data/.opened yet) tries,
// reports what it got and the modes it sees, then waits for /data to turn
// 0777 anyway (the test does it from the host, standing in for a way
// around seccomp) and crashes (exit 3). A later run reports the modes it
// finds and sleeps for arg.
func chmodOwn(r *result, arg string) {
	modes := func() {
		for key, p := range map[string]string{"data_mode": "/data", "socket_mode": "/run/blvm/hub.sock", "config_mode": "/etc/module/config.toml"} {
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				r.Info[key] = errnoName(err)
			} else {
				r.Info[key] = fmt.Sprintf("%04o", st.Mode&0o7777)
			}
		}
	}
	if _, err := os.Stat("/data/.opened"); err == nil {
		r.Info["run"] = "later"
		modes()
		r.Errno = "ok"
		json.NewEncoder(os.Stdout).Encode(r)
		d, _ := time.ParseDuration(arg)
		time.Sleep(d)
		return
	}
	r.Info["run"] = "first"
	os.WriteFile("/data/.opened", nil, 0o600)
	os.WriteFile("/data/file", []byte("module data"), 0o600)
	for key, p := range map[string]string{"chmod_data": "/data", "chmod_file": "/data/file", "chmod_socket": "/run/blvm/hub.sock", "chmod_config": "/etc/module/config.toml"} {
		r.Info[key] = errnoName(unix.Fchmodat(unix.AT_FDCWD, p, 0o777, 0))
	}
	modes()
	r.Errno = "ok"
	json.NewEncoder(os.Stdout).Encode(r)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var st unix.Stat_t
		if unix.Stat("/data", &st) == nil && st.Mode&0o777 == 0o777 {
			break
		}
	}
	os.Exit(3)
}
