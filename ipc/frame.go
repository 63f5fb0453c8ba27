// Package ipc is the framing of the module protocol: a 4-byte big-endian
// length, then one serialized pb.Envelope. Both the hub and the SDK use it;
// the schema is ipc/proto and docs/protocol.md describes it for other languages.
package ipc

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

const (
	// DefaultMaxFrame is the frame size limit unless configured otherwise.
	DefaultMaxFrame = 1 << 20
	// HardMaxFrame is the largest limit that may be configured.
	HardMaxFrame = 16 << 20
	// ProtocolVersion is the version of ipc/proto this code speaks.
	ProtocolVersion = uint32(pb.ProtocolVersion_PROTOCOL_VERSION_1)
)

// ErrFrameTooLarge is returned when a frame's length prefix exceeds the limit.
// The reader stops before reading the payload, so the stream is unusable.
var ErrFrameTooLarge = errors.New("frame too large")

// ClampMaxFrame turns a configured limit into the one in force: zero means the
// default, and nothing goes above the hard cap.
func ClampMaxFrame(n int) int {
	switch {
	case n <= 0:
		return DefaultMaxFrame
	case n > HardMaxFrame:
		return HardMaxFrame
	}
	return n
}

// ReadFrame reads one frame's payload. A clean end of stream before the
// length prefix is io.EOF; one inside a frame is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(ClampMaxFrame(max)) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, ClampMaxFrame(max))
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// FrameBuffered reports whether br's buffer already holds a whole frame, or
// a length prefix over max (which ReadFrame refuses without reading on):
// either way, reading it needs no further read from the connection.
func FrameBuffered(br *bufio.Reader, max int) bool {
	if br.Buffered() < 4 {
		return false
	}
	hdr, err := br.Peek(4)
	if err != nil {
		return false
	}
	n := binary.BigEndian.Uint32(hdr)
	return uint64(n) > uint64(ClampMaxFrame(max)) || uint64(br.Buffered()) >= 4+uint64(n)
}

// AppendFrame appends the frame for payload to dst.
func AppendFrame(dst, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	return append(dst, payload...)
}

// ReadEnvelope reads and decodes one frame.
func ReadEnvelope(r io.Reader, max int) (*pb.Envelope, error) {
	buf, err := ReadFrame(r, max)
	if err != nil {
		return nil, err
	}
	env := new(pb.Envelope)
	if err := proto.Unmarshal(buf, env); err != nil {
		return nil, fmt.Errorf("decode envelope: %w", err)
	}
	if env.Body == nil {
		return nil, errors.New("decode envelope: empty body")
	}
	return env, nil
}

// MarshalEnvelope encodes env as one frame, refusing one over max.
func MarshalEnvelope(env *pb.Envelope, max int) ([]byte, error) {
	payload, err := proto.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	if len(payload) > ClampMaxFrame(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(payload), ClampMaxFrame(max))
	}
	return AppendFrame(make([]byte, 0, 4+len(payload)), payload), nil
}
