package record

import (
	"context"
	"sync"
	"time"
)

// Sample is one reading of a running module's resources.
type Sample struct {
	MemoryBytes uint64 // the cgroup's memory use now
	MemoryPeak  uint64 // the cgroup's own high-water mark, where it keeps one (v1)
	Pids        uint64
	CPUNanos    uint64 // total CPU time so far
	DataBytes   uint64 // bytes in use on /data
	TmpBytes    uint64 // bytes in use on /tmp
}

// Resources are the peaks of a run's samples.
type Resources struct {
	PeakMemory uint64 `json:"peak_memory_bytes"`
	PeakPids   uint64 `json:"peak_pids"`
	// CPUNanos is the CPU time at the last sample: work done after it (at
	// most one sampling interval) is not counted.
	CPUNanos uint64 `json:"cpu_nanos"`
	PeakData uint64 `json:"peak_data_bytes"`
	PeakTmp  uint64 `json:"peak_tmp_bytes"`
	Samples  int    `json:"samples"`
}

// Add folds one sample into the peaks.
func (r *Resources) Add(s Sample) {
	r.PeakMemory = max(r.PeakMemory, s.MemoryBytes, s.MemoryPeak)
	r.PeakPids = max(r.PeakPids, s.Pids)
	r.CPUNanos = max(r.CPUNanos, s.CPUNanos)
	r.PeakData = max(r.PeakData, s.DataBytes)
	r.PeakTmp = max(r.PeakTmp, s.TmpBytes)
	r.Samples++
}

// Probe reads one sample; an error (the module not running yet, or any
// more) skips that reading.
type Probe func() (Sample, error)

// Sampler reads a probe at a fixed interval until stopped.
type Sampler struct {
	mu   sync.Mutex
	res  Resources
	stop context.CancelFunc
	done chan struct{}
}

// StartSampler reads probe every interval until Stop.
func StartSampler(ctx context.Context, every time.Duration, probe Probe) *Sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &Sampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if smp, err := probe(); err == nil {
				s.mu.Lock()
				s.res.Add(smp)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling and gives the peaks.
func (s *Sampler) Stop() Resources {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res
}
