// Command hyperfine2bench turns hyperfine's --export-json into `go test
// -bench` lines, one per timed run, so that benchtable reports hyperfine's
// pairs beside the Go benchmarks (median over the runs, ratio to the peer).
// Each command must be named (hyperfine -n NAME); the benchmark is
// BenchmarkNAME.
//
// Usage: hyperfine2bench FILE.json >> bench.txt
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
)

type export struct {
	Results []struct {
		Command string    `json:"command"`
		Times   []float64 `json:"times"` // seconds
	} `json:"results"`
}

var benchName = regexp.MustCompile(`^[A-Za-z0-9]+$`)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hyperfine2bench FILE.json")
		os.Exit(2)
	}
	if err := convert(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "hyperfine2bench:", err)
		os.Exit(1)
	}
}

func convert(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var e export
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(e.Results) == 0 {
		return fmt.Errorf("%s: no results", path)
	}
	for _, r := range e.Results {
		// An unnamed command's name is its command line: refuse it rather
		// than invent a benchmark name.
		if !benchName.MatchString(r.Command) {
			return fmt.Errorf("%s: command %q: name it with hyperfine -n NAME (letters and digits)", path, r.Command)
		}
		if len(r.Times) == 0 {
			return fmt.Errorf("%s: %s: no timed runs", path, r.Command)
		}
		for _, t := range r.Times {
			fmt.Printf("Benchmark%s \t       1\t%12.0f ns/op\n", r.Command, t*1e9)
		}
	}
	return nil
}
