// Package sdk is the Go SDK for blvm modules. A module connects to the node's
// API hub over its socket, calls hub methods, subscribes to events, answers
// CLI and module-API invocations, and logs; the SDK does the framing, the
// handshake and the matching of responses to requests.
//
// A module runs in a container whose only way out is that socket. Everything
// the hub refuses comes back as an *Error with a pb.ErrorCode; a refusal never
// closes the connection.
//
// # A complete module
//
// This is what `blvm-sandbox new hello-blocks` writes as main.go (a test
// keeps the two equal). Its module.toml asks for capabilities =
// ["subscribe_events", "register_cli"], and its config.toml sets
// database_backend = "bbolt" for OpenDB. docs/modules.md is the reference:
// the manifest, the static build, the container, signing and installing.
//
//	// Command hello-blocks is a blvm module: it counts the blocks the node
//	// connects, remembers the last one in its own database, and offers the
//	// operator one CLI command: `blvm-sandbox cli hello-blocks blocks`.
//	package main
//
//	import (
//		"context"
//		"errors"
//		"fmt"
//		"io/fs"
//		"strconv"
//		"sync/atomic"
//
//		bolt "go.etcd.io/bbolt"
//
//		"github.com/blvm/blvm-sandbox/ipc/sdk"
//	)
//
//	// Config is config.toml, merged with the operator's [modules.hello-blocks].
//	type Config struct {
//		Greeting string `toml:"greeting"`
//	}
//
//	// sdk.Main cancels run's context on SIGTERM, which is how the runtime stops
//	// a module; SIGKILL follows only after the grace period.
//	func main() { sdk.Main("hello-blocks", run) }
//
//	func run(ctx context.Context) error {
//		cfg := Config{Greeting: "hello"}
//		if err := sdk.LoadConfig("", &cfg); err != nil && !errors.Is(err, fs.ErrNotExist) {
//			return err
//		}
//		db, err := sdk.OpenDB("") // /data/db/module.db, format from database_backend
//		if err != nil {
//			return err
//		}
//		defer db.Close()
//
//		m, err := sdk.Connect(ctx, sdk.Options{}) // name and socket from $BLVM_*
//		if err != nil {
//			return err
//		}
//		defer m.Close()
//
//		var seen atomic.Int64 // the CLI handler reads it while events arrive
//		m.OnEvent(sdk.EventBlockConnected, func(ctx context.Context, ev sdk.Event) {
//			b, err := ev.Block()
//			if err != nil {
//				m.Warn("bad block event", "err", err.Error())
//				return
//			}
//			seen.Add(1)
//			if err := db.Update(func(tx *bolt.Tx) error {
//				bk, err := tx.CreateBucketIfNotExists([]byte("tip"))
//				if err != nil {
//					return err
//				}
//				return bk.Put([]byte("last"), []byte(b.GetHash()))
//			}); err != nil {
//				m.Error("store block", "err", err.Error())
//			}
//			// Log lines go to stderr: `blvm-sandbox logs hello-blocks`.
//			m.Info(cfg.Greeting+", block", "height", strconv.FormatUint(b.GetHeight(), 10), "hash", b.GetHash())
//		})
//		err = m.HandleCLI(ctx, sdk.CLISpec{
//			About:    "hello-blocks: blocks seen",
//			Commands: []sdk.CLICommand{{Name: "blocks", About: "blocks seen since start, and the last one stored", Usage: "blocks"}},
//		}, func(ctx context.Context, _ string, _ []string) ([]byte, []byte, int) {
//			var last string
//			db.View(func(tx *bolt.Tx) error {
//				if bk := tx.Bucket([]byte("tip")); bk != nil {
//					last = string(bk.Get([]byte("last")))
//				}
//				return nil
//			})
//			return fmt.Appendf(nil, "seen %d blocks; last stored %s\n", seen.Load(), last), nil, 0
//		})
//		if err != nil {
//			return err
//		}
//		// Handlers first, then Subscribe, so no event arrives unhandled.
//		if err := m.Subscribe(ctx, sdk.EventBlockConnected); err != nil {
//			return err
//		}
//		m.Info("running", "module_id", m.Welcome().GetModuleId(), "network", m.Welcome().GetNetwork())
//		return m.Run(ctx) // returns nil once SIGTERM cancels ctx
//	}
//
// Log lines go to stderr, which the runtime captures for `blvm-sandbox
// logs NAME` (Options.LogToHub also sends them to the node's log). Main
// cancels the context on SIGTERM, so Run returns and the module exits 0
// before the runtime's grace period ends in SIGKILL.
package sdk
