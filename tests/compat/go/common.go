// Command compat runs Sluice's compatibility scenarios with a Go Kafka client.
//
//	compat franz-go|sarama BOOTSTRAP [SCENARIO...]
//
// Output protocol (shared by every program of tests/compat): "VERSION name ver",
// "PASS scenario detail", "FAIL scenario reason", "OBS scenario key=value" (observations that
// are compared between Apache Kafka and Sluice). Exit status 1 if any scenario failed.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

type scenario struct {
	name string
	run  func(bootstrap string) (string, error)
}

var runID = func() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

func topicName(client, base string) string { return client + "-" + base + "-" + runID }

func obs(scenario, key string, value any) {
	fmt.Printf("OBS %s %s=%s\n", scenario, key, strings.ReplaceAll(fmt.Sprint(value), "\n", " "))
}

func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

// rec is one consumed record, client-independent.
type rec struct {
	key, value string
	partition  int32
	offset     int64
}

func seqOf(v string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(v, "v"))
	if err != nil {
		return -1
	}
	return n
}

// checkOrder verifies increasing offsets per partition and production order per key.
func checkOrder(rs []rec) error {
	lastOff := map[int32]int64{}
	lastSeq := map[string]int{}
	for _, r := range rs {
		if lo, ok := lastOff[r.partition]; ok && r.offset <= lo {
			return fmt.Errorf("offsets not increasing in partition %d", r.partition)
		}
		lastOff[r.partition] = r.offset
		s := seqOf(r.value)
		if ls, ok := lastSeq[r.key]; ok && s <= ls {
			return fmt.Errorf("key %s out of order: %d after %d", r.key, s, ls)
		}
		lastSeq[r.key] = s
	}
	return nil
}

// checkProduced verifies that rs holds exactly the values v{from}..v{from+n-1}, each once,
// with every key in a single partition.
func checkProduced(rs []rec, from, n int) error {
	seen := map[string]bool{}
	keyPart := map[string]int32{}
	for _, r := range rs {
		if seen[r.value] {
			return fmt.Errorf("duplicate %s", r.value)
		}
		seen[r.value] = true
		if s := seqOf(r.value); s < from || s >= from+n {
			return fmt.Errorf("unexpected record %s", r.value)
		}
		if p, ok := keyPart[r.key]; ok && p != r.partition {
			return fmt.Errorf("key %s in partitions %d and %d", r.key, p, r.partition)
		}
		keyPart[r.key] = r.partition
	}
	if len(seen) != n {
		return fmt.Errorf("consumed %d distinct of %d", len(seen), n)
	}
	return checkOrder(rs)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: compat franz-go|sarama BOOTSTRAP [SCENARIO...]")
		os.Exit(2)
	}
	client, bootstrap := os.Args[1], os.Args[2]
	var all []scenario
	switch client {
	case "franz-go":
		fmt.Println("VERSION franz-go", moduleVersion("github.com/twmb/franz-go"))
		all = franzScenarios()
	case "sarama":
		fmt.Println("VERSION sarama", moduleVersion("github.com/IBM/sarama"))
		all = saramaScenarios()
	default:
		fmt.Fprintln(os.Stderr, "unknown client", client)
		os.Exit(2)
	}
	selected := os.Args[3:]
	if len(selected) == 0 {
		for _, s := range all {
			selected = append(selected, s.name)
		}
	}
	failed := false
	for _, name := range selected {
		var sc *scenario
		for i := range all {
			if all[i].name == name {
				sc = &all[i]
			}
		}
		if sc == nil {
			fmt.Printf("FAIL %s unknown scenario\n", name)
			failed = true
			continue
		}
		t0 := time.Now()
		detail, err := runGuarded(sc, bootstrap)
		if err != nil {
			failed = true
			fmt.Printf("FAIL %s %s\n", name, strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Printf("PASS %s %s (%d ms)\n", name, detail, time.Since(t0).Milliseconds())
		}
	}
	if failed {
		os.Exit(1)
	}
}

func runGuarded(sc *scenario, bootstrap string) (string, error) {
	type result struct {
		detail string
		err    error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				ch <- result{err: fmt.Errorf("panic: %v", p)}
			}
		}()
		d, err := sc.run(bootstrap)
		ch <- result{d, err}
	}()
	select {
	case r := <-ch:
		return r.detail, r.err
	case <-time.After(90 * time.Second):
		return "", fmt.Errorf("scenario timed out after 90s")
	}
}
