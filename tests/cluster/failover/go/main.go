// Failover driver for tests/cluster/test_failover_clients.py: franz-go (kgo) producing
// (acks=all, idempotent: kgo's default) and consuming (group, committing) one topic while the
// test kills and restarts a partition leader. Prints one JSON object per line on stdout:
//
//	{"ack": VALUE, "p": P, "o": OFFSET}   a record the producer got acknowledged
//	{"rec": VALUE, "p": P, "o": OFFSET}   a record the consumer received
//	{"err": "...", "side": "producer"|"consumer"}   an error the client reported (and survived)
//	{"produced": N} after "stop" on stdin and the producer's flush; {"done": N, "missing": M}
//
// The consumer keeps going after "stop" until it has seen every acknowledged value (or 90 s),
// then commits synchronously and exits.
//
// Usage: failover-go BOOTSTRAP TOPIC GROUP PARTITIONS
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

var outMu sync.Mutex

func out(v map[string]any) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

func main() {
	bootstrap, topic, group := os.Args[1], os.Args[2], os.Args[3]
	partitions, _ := strconv.Atoi(os.Args[4])
	seeds := strings.Split(bootstrap, ",")

	var ackedMu sync.Mutex
	acked := map[string]bool{}
	var producerDone atomic.Int64
	stop := make(chan struct{})

	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordDeliveryTimeout(120*time.Second))
	if err != nil {
		out(map[string]any{"err": "producer: " + err.Error(), "side": "producer"})
		os.Exit(1)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond), kgo.AutoCommitInterval(time.Second))
	if err != nil {
		out(map[string]any{"err": "consumer: " + err.Error(), "side": "consumer"})
		os.Exit(1)
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		i := 0
	loop:
		for {
			select {
			case <-stop:
				break loop
			default:
			}
			v := fmt.Sprintf("franz-%d", i)
			r := &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: []byte(v)}
			i++
			prod.Produce(context.Background(), r, func(r *kgo.Record, err error) {
				if err != nil {
					out(map[string]any{"err": err.Error(), "side": "producer"})
					return
				}
				ackedMu.Lock()
				acked[string(r.Value)] = true
				ackedMu.Unlock()
				out(map[string]any{"ack": string(r.Value), "p": r.Partition, "o": r.Offset})
			})
			time.Sleep(4 * time.Millisecond)
		}
		if err := prod.Flush(context.Background()); err != nil {
			out(map[string]any{"err": "flush: " + err.Error(), "side": "producer"})
		}
		out(map[string]any{"produced": i})
		producerDone.Store(time.Now().UnixNano())
	}()
	go func() {
		defer wg.Done()
		seen := map[string]bool{}
		for {
			if at := producerDone.Load(); at != 0 {
				ackedMu.Lock()
				missing := 0
				for v := range acked {
					if !seen[v] {
						missing++
					}
				}
				ackedMu.Unlock()
				if missing == 0 || time.Since(time.Unix(0, at)) > 90*time.Second {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					if err := cons.CommitUncommittedOffsets(ctx); err != nil {
						out(map[string]any{"err": "final commit: " + err.Error(), "side": "consumer"})
					}
					cancel()
					out(map[string]any{"done": len(seen), "missing": missing})
					return
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			fs := cons.PollFetches(ctx)
			cancel()
			fs.EachError(func(t string, p int32, err error) {
				if err != context.DeadlineExceeded {
					out(map[string]any{"err": fmt.Sprintf("%s/%d: %v", t, p, err), "side": "consumer"})
				}
			})
			fs.EachRecord(func(r *kgo.Record) {
				seen[string(r.Value)] = true
				out(map[string]any{"rec": string(r.Value), "p": r.Partition, "o": r.Offset})
			})
		}
	}()

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "stop" {
			break
		}
	}
	close(stop)
	wg.Wait()
	prod.Close()
	cons.Close()
}
