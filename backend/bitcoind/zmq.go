package bitcoind

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/btcsuite/btcd/chainhash/v2"
	"github.com/go-zeromq/zmq4"
)

// ZMQ topics Core publishes that the driver reads.
const (
	topicHashBlock = "hashblock"
	topicRawBlock  = "rawblock"
	topicSequence  = "sequence"
)

// zmqTopics groups the configured topics by endpoint.
func zmqTopics(cfg Config) map[string][]string {
	m := map[string][]string{}
	if cfg.ZMQHashBlock != "" {
		m[cfg.ZMQHashBlock] = append(m[cfg.ZMQHashBlock], topicHashBlock)
	}
	if cfg.ZMQSequence != "" {
		m[cfg.ZMQSequence] = append(m[cfg.ZMQSequence], topicSequence)
	}
	return m
}

// seqs remembers the last sequence number of each topic of one socket.
type seqs struct {
	last map[string]uint32
}

// next records seq for topic and says whether messages were lost before
// it. The first message after a (re)dial is no gap: the dial itself forces
// a resync.
func (s *seqs) next(topic string, seq uint32) (gap bool) {
	if s.last == nil {
		s.last = map[string]uint32{}
	}
	prev, ok := s.last[topic]
	s.last[topic] = seq
	return ok && seq != prev+1
}

// zmqLoop keeps one SUB socket dialled to ep. zmq4 does not notice a
// publisher that went away, so the socket is redialled whenever the RPC
// side reconnects (a restarted node has new sockets) and after an error.
func (d *Driver) zmqLoop(ep string, topics []string, redo chan struct{}) {
	defer d.wg.Done()
	delay := d.cfg.RetryMin
	for {
		ctx, cancel := context.WithCancel(context.Background())
		sub := zmq4.NewSub(ctx, zmq4.WithDialerMaxRetries(0), zmq4.WithDialerTimeout(d.cfg.CallTimeout))
		ended := make(chan error, 1)
		if err := sub.Dial(ep); err != nil {
			ended <- err
		} else {
			for _, t := range topics {
				_ = sub.SetOption(zmq4.OptionSubscribe, t)
			}
			d.zmqUp.Add(1)
			d.log.Info("zmq connected", "endpoint", ep, "topics", topics)
			// Missed while not subscribed: pull.
			d.resync.Store(true)
			d.poke()
			go func() { ended <- d.zmqRead(sub) }()
		}
		var err error
		select {
		case err = <-ended:
		case <-redo:
			delay = d.cfg.RetryMin
		case <-d.done:
		}
		cancel()
		sub.Close()
		select {
		case <-d.done:
			return
		default:
		}
		if err == nil {
			continue // redial at once
		}
		d.log.Warn("zmq unavailable; polling meanwhile", "endpoint", ep, "err", err, "retry_in", delay)
		select {
		case <-time.After(delay):
			delay = min(2*delay, d.cfg.RetryMax)
		case <-redo:
			delay = d.cfg.RetryMin
		case <-d.done:
			return
		}
	}
}

// zmqRead handles messages until the socket fails. Messages are
// [topic, body, 4-byte little-endian sequence number].
func (d *Driver) zmqRead(sub zmq4.Socket) error {
	defer d.zmqUp.Add(-1)
	var s seqs
	for {
		msg, err := sub.Recv()
		if err != nil {
			return err
		}
		if len(msg.Frames) != 3 || len(msg.Frames[2]) != 4 {
			d.log.Warn("zmq: malformed message; resyncing", "frames", len(msg.Frames))
			d.resync.Store(true)
			d.poke()
			continue
		}
		d.zmqMsgs.Add(1)
		topic, body := string(msg.Frames[0]), msg.Frames[1]
		if s.next(topic, binary.LittleEndian.Uint32(msg.Frames[2])) {
			d.gaps.Add(1)
			d.log.Warn("zmq: sequence gap; resyncing", "topic", topic)
			d.resync.Store(true)
			d.poke()
			continue
		}
		d.handle(topic, body)
	}
}

// handle turns one message into a wake-up. Hashes in ZMQ bodies are in
// display (reversed) byte order.
func (d *Driver) handle(topic string, body []byte) {
	switch topic {
	case topicHashBlock, topicRawBlock:
		d.poke()
	case topicSequence:
		// <32-byte hash><label>[<8-byte mempool sequence> for A and R]
		if len(body) < 33 {
			d.resync.Store(true)
			d.poke()
			return
		}
		switch body[32] {
		case 'A':
			var h chainhash.Hash
			for i := range 32 {
				h[i] = body[31-i]
			}
			select {
			case d.txs <- h:
			default:
				d.overflow.Store(true)
			}
		case 'R':
			// Evicted or replaced: the next mempool sync says which.
			d.overflow.Store(true)
		}
		// C and D are block connects and disconnects.
		d.poke()
	}
}
