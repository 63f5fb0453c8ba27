package ipc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/blvm/blvm-sandbox/ipc/pb"
)

func frame(t testing.TB, env *pb.Envelope) []byte {
	t.Helper()
	b, err := MarshalEnvelope(env, HardMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seedEnvelopes() []*pb.Envelope {
	return []*pb.Envelope{
		{Body: &pb.Envelope_Hello{Hello: &pb.Hello{ProtocolVersion: ProtocolVersion, ModuleName: "block-logger", ModuleVersion: "1.0.0"}}},
		{Body: &pb.Envelope_Request{Request: &pb.Request{Id: 1, Method: "chain.GetBlockByHeight", Params: []byte{8, 3}}}},
		{Body: &pb.Envelope_Response{Response: &pb.Response{Id: 1, Code: pb.ErrorCode_PERMISSION_DENIED, Message: "no"}}},
		{Body: &pb.Envelope_Event{Event: &pb.Event{Type: "node.BlockConnected", Sequence: 9, Dropped: 2, Payload: []byte("x")}}},
		{Body: &pb.Envelope_Log{Log: &pb.Log{Level: pb.LogLevel_WARN, Message: "m", Fields: map[string]string{"k": "v"}}}},
		{Body: &pb.Envelope_Invocation{Invocation: &pb.Invocation{Id: 4, Kind: &pb.Invocation_Cli{Cli: &pb.CliInvocation{Command: "recent", Args: []string{"-n"}}}}}},
		{Body: &pb.Envelope_InvocationResult{InvocationResult: &pb.InvocationResult{Id: 4, Kind: &pb.InvocationResult_Api{Api: &pb.ApiResult{Result: []byte("r")}}}}},
		{Body: &pb.Envelope_RegisterCliSpec{RegisterCliSpec: &pb.RegisterCliSpec{Id: 2, Commands: []*pb.CliCommand{{Name: "recent"}}}}},
	}
}

func TestReadEnvelope(t *testing.T) {
	var stream []byte
	for _, env := range seedEnvelopes() {
		stream = append(stream, frame(t, env)...)
	}
	r := bytes.NewReader(stream)
	for i, want := range seedEnvelopes() {
		got, err := ReadEnvelope(r, 0)
		if err != nil || !proto.Equal(got, want) {
			t.Fatalf("%d: %v, %v", i, got, err)
		}
	}
	if _, err := ReadEnvelope(r, 0); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}

	tests := []struct {
		name string
		in   []byte
		max  int
		want error // nil: any decode error
	}{
		{"over the limit", binary.BigEndian.AppendUint32(nil, 1025), 1024, ErrFrameTooLarge},
		{"over the hard cap whatever the limit", binary.BigEndian.AppendUint32(nil, HardMaxFrame+1), 1 << 30, ErrFrameTooLarge},
		{"truncated payload", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2), 0, io.ErrUnexpectedEOF},
		{"truncated header", []byte{0, 0}, 0, io.ErrUnexpectedEOF},
		{"empty body", binary.BigEndian.AppendUint32(nil, 0), 0, nil},
		{"garbage", append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff), 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadEnvelope(bytes.NewReader(tt.in), tt.max)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := MarshalEnvelope(&pb.Envelope{Body: &pb.Envelope_Log{Log: &pb.Log{Message: string(make([]byte, 2000))}}}, 1024); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("marshal over the limit: %v", err)
	}
}

// FuzzReadEnvelope feeds arbitrary bytes to the decoder the hub runs on every
// module frame. It must never panic, never accept a frame over the limit,
// and whatever it accepts must survive a round trip.
func FuzzReadEnvelope(f *testing.F) {
	for _, env := range seedEnvelopes() {
		f.Add(frame(f, env), uint16(0))
	}
	f.Add([]byte{0, 0, 0, 0}, uint16(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1}, uint16(16))
	f.Add([]byte{0, 0, 0, 5, 0x0a, 0x03, 0x08}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		max := int(limit)
		r := bytes.NewReader(data)
		for {
			before := r.Len()
			env, err := ReadEnvelope(r, max)
			if err != nil {
				if errors.Is(err, ErrFrameTooLarge) {
					n := binary.BigEndian.Uint32(data[len(data)-before:])
					if uint64(n) <= uint64(ClampMaxFrame(max)) {
						t.Fatalf("frame of %d bytes refused under limit %d", n, ClampMaxFrame(max))
					}
				}
				return
			}
			used := before - r.Len()
			if used-4 > ClampMaxFrame(max) {
				t.Fatalf("accepted a %d-byte frame over limit %d", used-4, ClampMaxFrame(max))
			}
			if env.Body == nil {
				t.Fatal("accepted an envelope with no body")
			}
			again, err := MarshalEnvelope(env, HardMaxFrame)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			back, err := ReadEnvelope(bytes.NewReader(again), HardMaxFrame)
			if err != nil || !proto.Equal(env, back) {
				t.Fatalf("round trip: %v, %v != %v", err, back, env)
			}
		}
	})
}

// TestFrameBuffered: true only when the buffer holds a whole frame, or a
// length over the limit (refused without reading on).
func TestFrameBuffered(t *testing.T) {
	whole := AppendFrame(nil, []byte("hello"))
	tests := []struct {
		name string
		in   []byte
		want bool
	}{
		{"empty", nil, false},
		{"part of the length", whole[:3], false},
		{"length only", whole[:4], false},
		{"all but one byte", whole[:len(whole)-1], false},
		{"whole", whole, true},
		{"whole and more", append(append([]byte(nil), whole...), 0, 0), true},
		{"empty frame", []byte{0, 0, 0, 0}, true},
		{"over the limit", []byte{0, 0, 0x10, 0x01}, true},
	}
	for _, tt := range tests {
		br := bufio.NewReader(bytes.NewReader(tt.in))
		br.Peek(len(tt.in)) // fill the buffer with everything there is
		if got := FrameBuffered(br, 4096); got != tt.want {
			t.Errorf("%s: FrameBuffered = %v, want %v", tt.name, got, tt.want)
		}
	}
}
