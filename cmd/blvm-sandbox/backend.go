package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/blvm/blvm-sandbox/backend/bitcoind"
	"github.com/blvm/blvm-sandbox/backend/btcd"
	"github.com/blvm/blvm-sandbox/devchain"
	"github.com/blvm/blvm-sandbox/ipc/hub"
	"github.com/blvm/blvm-sandbox/nodeconfig"
)

// startTimeout is how long up waits for a real node before it reports it
// unreachable and carries on; the driver keeps retrying with backoff, and
// modules get UNAVAILABLE meanwhile.
const startTimeout = 5 * time.Second

// nodeBackend builds the hub's backend from [backend]. The dev chain is
// always open: it is the backend for kind = "devchain" (mine reports it
// should mine), and the governance store for a real node, which has none.
func nodeBackend(cfg *nodeconfig.Config, chain *devchain.Chain, log *slog.Logger) (b hub.Backend, mine bool, stop func(), err error) {
	bc := cfg.Backend
	switch bc.Kind {
	case nodeconfig.BackendDevchain, "":
		return chain, true, func() {}, nil
	case nodeconfig.BackendBtcd:
	case nodeconfig.BackendBitcoind:
		return coreBackend(cfg, chain, log)
	default:
		return nil, false, nil, fmt.Errorf("[backend] kind %q: not available in this build", bc.Kind)
	}
	user, pass, err := bc.Credentials()
	if err != nil {
		return nil, false, nil, err
	}
	var cert []byte
	if !bc.TLSDisable {
		if cert, err = os.ReadFile(bc.TLSCert); err != nil {
			return nil, false, nil, fmt.Errorf("[backend] tls_cert: %w", err)
		}
	}
	d, err := btcd.New(btcd.Config{
		Host: bc.URL, User: user, Pass: pass, CertPEM: cert, DisableTLS: bc.TLSDisable,
		Network: btcdNetwork(cfg.Node.Network), CallTimeout: bc.CallTimeout, Poll: bc.PollInterval,
		Governance: chain, Logger: log,
	})
	if err != nil {
		return nil, false, nil, fmt.Errorf("[backend]: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		log.Error("the node is unreachable; retrying in the background, modules get UNAVAILABLE until it answers", "err", err)
	}
	return d, false, func() { d.Close() }, nil
}

// btcdNetwork is btcd's name for [node] network.
func btcdNetwork(n string) string {
	if n == "testnet" {
		return "testnet3"
	}
	return n
}

// coreBackend is kind = "bitcoind": Core's JSON-RPC, with its ZMQ
// endpoints as wake-ups when set. Without ZMQ, poll_interval (if set) is
// how often the driver polls; with it, how often it reconciles anyway.
func coreBackend(cfg *nodeconfig.Config, chain *devchain.Chain, log *slog.Logger) (hub.Backend, bool, func(), error) {
	bc := cfg.Backend
	user, pass, err := bc.Credentials()
	if err != nil {
		return nil, false, nil, err
	}
	dc := bitcoind.Config{
		URL: bc.URL, User: user, Pass: pass, Network: coreNetwork(cfg.Node.Network),
		ZMQHashBlock: bc.ZMQHashBlock, ZMQSequence: bc.ZMQSequence,
		CallTimeout: bc.CallTimeout, Poll: bc.PollInterval,
		Governance: chain, Logger: log,
	}
	if bc.ZMQHashBlock == "" && bc.ZMQSequence == "" {
		dc.FallbackPoll = bc.PollInterval
	}
	d, err := bitcoind.New(dc)
	if err != nil {
		return nil, false, nil, fmt.Errorf("[backend]: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := d.WaitConnected(ctx); err != nil {
		log.Error("the node is unreachable; retrying in the background, modules get UNAVAILABLE until it answers", "err", err)
	}
	return d, false, func() { d.Close() }, nil
}

// coreNetwork is Bitcoin Core's name (getblockchaininfo's chain) for
// [node] network.
func coreNetwork(n string) string {
	switch n {
	case "mainnet":
		return "main"
	case "testnet":
		return "test"
	}
	return n
}
