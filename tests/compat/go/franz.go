package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func franzScenarios() []scenario {
	return []scenario{
		{"produce_consume", franzProduceConsume},
		{"admin", franzAdmin},
		{"errors", franzErrors},
		{"group", franzGroup},
		{"admin_groups", franzAdminGroups},
		{"fetch_edge", franzFetchEdge},
	}
}

func franzClient(bootstrap string, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{kgo.SeedBrokers(bootstrap), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.FetchMaxWait(500 * time.Millisecond), kgo.RetryTimeout(20 * time.Second)}
	return kgo.NewClient(append(base, opts...)...)
}

func franzCreate(ctx context.Context, adm *kadm.Client, topic string, partitions int32) error {
	r, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
	if err != nil {
		return err
	}
	return r.Err
}

func franzProduce(ctx context.Context, cl *kgo.Client, topic string, from, n, keys int) error {
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("k%d", i%keys)),
			Value: []byte(fmt.Sprintf("v%d", from+i))})
	}
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

func franzProduceConsume(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := topicName("franz", "pc")
	cl, err := franzClient(bootstrap)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	if err := franzCreate(ctx, kadm.NewClient(cl), topic, 3); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	const n = 300
	if err := franzProduce(ctx, cl, topic, 0, n, 10); err != nil {
		return "", fmt.Errorf("produce: %w", err)
	}
	cons, err := franzClient(bootstrap, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return "", err
	}
	defer cons.Close()
	var got []rec
	for len(got) < n && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 && ctx.Err() == nil {
			return "", fmt.Errorf("fetch: %v", errs[0].Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, rec{string(r.Key), string(r.Value), r.Partition, r.Offset})
		})
	}
	if err := checkProduced(got, 0, n); err != nil {
		return "", err
	}
	obs("produce_consume", "records", len(got))
	return fmt.Sprintf("%d records, order ok", n), nil
}

func franzAdmin(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := topicName("franz", "admin")
	cl, err := franzClient(bootstrap)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := franzCreate(ctx, adm, topic, 1); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return "", err
	}
	if td, ok := tds[topic]; !ok || td.Err != nil || len(td.Partitions) != 1 {
		return "", fmt.Errorf("list topics: %+v", tds[topic])
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		return "", fmt.Errorf("describe configs: %v %v", err, rcs)
	}
	var keys []string
	for _, c := range rcs[0].Configs {
		keys = append(keys, c.Key)
	}
	sort.Strings(keys)
	obs("admin", "topic_config_keys", strings.Join(keys, ","))
	v := "3600000"
	ars, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &v}}, topic)
	if err != nil || ars[0].Err != nil {
		return "", fmt.Errorf("incremental alter: %v %v", err, ars)
	}
	// Kafka (KRaft) applies config changes asynchronously: re-read for a few seconds (seen
	// against Kafka 4.4.0: the first DescribeConfigs after the alter still had the default).
	found, source := false, ""
	waitFor(5*time.Second, func() bool {
		rcs, err = adm.DescribeTopicConfigs(ctx, topic)
		if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
			return false
		}
		for _, c := range rcs[0].Configs {
			if c.Key == "retention.ms" && c.Value != nil && *c.Value == v {
				found, source = true, c.Source.String()
			}
		}
		return found
	})
	if err != nil {
		return "", err
	}
	if found {
		obs("admin", "retention.ms.altered_source", source)
	}
	if !found {
		return "", errors.New("retention.ms not altered")
	}
	cps, err := adm.UpdatePartitions(ctx, 3, topic)
	if err != nil || cps[topic].Err != nil {
		return "", fmt.Errorf("create partitions: %v %v", err, cps[topic].Err)
	}
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return "", err
	}
	if len(md.Brokers) < 1 || md.Cluster == "" || md.Controller < 0 {
		return "", fmt.Errorf("broker metadata %+v", md)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		tds, err = adm.ListTopics(ctx, topic)
		if err == nil && len(tds[topic].Partitions) == 3 {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("partitions after update: %d", len(tds[topic].Partitions))
		}
		time.Sleep(200 * time.Millisecond)
	}
	dts, err := adm.DeleteTopics(ctx, topic)
	if err != nil || dts[topic].Err != nil {
		return "", fmt.Errorf("delete: %v %v", err, dts[topic].Err)
	}
	return fmt.Sprintf("create/list/configs(%d keys)/alter/partitions/metadata/delete ok", len(keys)), nil
}

func errName(err error) string {
	if err == nil {
		return "none"
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Message
	}
	return "other:" + err.Error()
}

func franzErrors(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := topicName("franz", "err")
	cl, err := franzClient(bootstrap)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := franzCreate(ctx, adm, topic, 2); err != nil {
		return "", err
	}
	seen := map[string]string{}
	seen["create_existing"] = errName(franzCreate(ctx, adm, topic, 1))
	seen["create_invalid_name"] = errName(franzCreate(ctx, adm, "bad/name", 1))
	seen["create_zero_partitions"] = errName(franzCreate(ctx, adm, topicName("franz", "zero"), 0))
	cps, err := adm.UpdatePartitions(ctx, 1, topic)
	if err != nil {
		return "", err
	}
	seen["partitions_decrease"] = errName(cps[topic].Err)
	dts, err := adm.DeleteTopics(ctx, topicName("franz", "nosuch"))
	if err != nil {
		seen["delete_unknown"] = errName(err)
	} else {
		for _, d := range dts {
			seen["delete_unknown"] = errName(d.Err)
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		obs("errors", k, seen[k])
	}
	want := map[string]string{"create_existing": "TOPIC_ALREADY_EXISTS", "create_invalid_name": "INVALID_TOPIC_EXCEPTION",
		"partitions_decrease": "INVALID_PARTITIONS", "delete_unknown": "UNKNOWN_TOPIC_OR_PARTITION"}
	for k, w := range want {
		if seen[k] != w {
			return "", fmt.Errorf("%s: got %s, want %s", k, seen[k], w)
		}
	}
	_, _ = adm.DeleteTopics(ctx, topic)
	return fmt.Sprintf("%d error cases as expected", len(seen)), nil
}

// franzMember is one group member polling in its own goroutine.
type franzMember struct {
	cl       *kgo.Client
	mu       sync.Mutex
	assigned int
	got      []rec
}

func newFranzMember(bootstrap, group, topic string) (*franzMember, error) {
	m := &franzMember{}
	cl, err := franzClient(bootstrap, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
			m.mu.Lock()
			m.assigned += len(a[topic])
			m.mu.Unlock()
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			m.assigned -= len(r[topic])
			m.mu.Unlock()
			_ = c.CommitMarkedOffsets(ctx)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) {
			m.mu.Lock()
			m.assigned -= len(r[topic])
			m.mu.Unlock()
		}),
		kgo.AutoCommitMarks(), kgo.BlockRebalanceOnPoll())
	if err != nil {
		return nil, err
	}
	m.cl = cl
	return m, nil
}

// poll fetches once; records are marked for commit after they are recorded.
func (m *franzMember) poll(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	fs := m.cl.PollFetches(pctx)
	defer m.cl.AllowRebalance()
	for _, e := range fs.Errors() {
		if !errors.Is(e.Err, context.DeadlineExceeded) && !errors.Is(e.Err, context.Canceled) {
			return e.Err
		}
	}
	m.mu.Lock()
	fs.EachRecord(func(r *kgo.Record) {
		m.got = append(m.got, rec{string(r.Key), string(r.Value), r.Partition, r.Offset})
	})
	m.mu.Unlock()
	m.cl.MarkCommitRecords(fs.Records()...)
	return nil
}

func (m *franzMember) state() (int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.assigned, len(m.got)
}

func pollUntil(ctx context.Context, ms []*franzMember, cond func() bool) error {
	for ctx.Err() == nil {
		if cond() {
			return nil
		}
		for _, m := range ms {
			if err := m.poll(ctx); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

func balanced(ms []*franzMember, each int) func() bool {
	return func() bool {
		for _, m := range ms {
			if a, _ := m.state(); a != each {
				return false
			}
		}
		return true
	}
}

func totalGot(ms []*franzMember) []rec {
	var all []rec
	for _, m := range ms {
		m.mu.Lock()
		all = append(all, m.got...)
		m.mu.Unlock()
	}
	return all
}

func franzGroup(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	topic := topicName("franz", "grp")
	group := "franz-group-" + runID
	cl, err := franzClient(bootstrap)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := franzCreate(ctx, adm, topic, 4); err != nil {
		return "", err
	}
	run := func(from, beforeJoin, afterJoin int) (int, error) {
		if beforeJoin > 0 {
			if err := franzProduce(ctx, cl, topic, from, beforeJoin, 16); err != nil {
				return 0, err
			}
		}
		var ms []*franzMember
		for i := 0; i < 2; i++ {
			m, err := newFranzMember(bootstrap, group, topic)
			if err != nil {
				return 0, err
			}
			defer m.cl.Close()
			ms = append(ms, m)
		}
		if err := pollUntil(ctx, ms, balanced(ms, 2)); err != nil {
			return 0, fmt.Errorf("group never balanced 2/2: %w", err)
		}
		if beforeJoin == 0 && len(totalGot(ms)) > 0 {
			return 0, fmt.Errorf("received records before any were produced")
		}
		if err := franzProduce(ctx, cl, topic, from+beforeJoin, afterJoin, 16); err != nil {
			return 0, err
		}
		n := beforeJoin + afterJoin
		distinct := func() int {
			seen := map[string]bool{}
			for _, r := range totalGot(ms) {
				seen[r.value] = true
			}
			return len(seen)
		}
		if err := pollUntil(ctx, ms, func() bool { return distinct() >= n }); err != nil {
			return 0, fmt.Errorf("consumed %d distinct of %d: %w", distinct(), n, err)
		}
		time.Sleep(300 * time.Millisecond)
		for _, m := range ms {
			_ = m.poll(ctx)
			if err := m.cl.CommitMarkedOffsets(ctx); err != nil {
				return 0, fmt.Errorf("commit: %w", err)
			}
		}
		all := totalGot(ms)
		seen := map[string]bool{}
		for _, r := range all {
			if s := seqOf(r.value); s < from {
				return 0, fmt.Errorf("re-consumed committed record %s", r.value)
			}
			seen[r.value] = true
		}
		if len(seen) != n {
			return 0, fmt.Errorf("consumed %d distinct, want %d", len(seen), n)
		}
		if beforeJoin == 0 {
			if err := checkProduced(all, from, n); err != nil {
				return 0, err
			}
			p0 := map[int32]bool{}
			for _, r := range ms[0].got {
				p0[r.partition] = true
			}
			for _, r := range ms[1].got {
				if p0[r.partition] {
					return 0, fmt.Errorf("both members read partition %d", r.partition)
				}
			}
		}
		return len(all) - len(seen), nil
	}
	if _, err := run(0, 0, 200); err != nil {
		return "", fmt.Errorf("first generation: %w", err)
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return "", err
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 200 {
		return "", fmt.Errorf("committed offsets sum %d, want 200", sum)
	}
	dupes, err := run(200, 50, 50)
	if err != nil {
		return "", fmt.Errorf("after restart: %w", err)
	}
	return fmt.Sprintf("2 members x 2 partitions, 200 exactly once + committed; restart resumed with the 100 new (%d redelivered)", dupes), nil
}

func franzAdminGroups(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := topicName("franz", "ag")
	group := "franz-admin-group-" + runID
	cl, err := franzClient(bootstrap)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := franzCreate(ctx, adm, topic, 2); err != nil {
		return "", err
	}
	if err := franzProduce(ctx, cl, topic, 0, 20, 4); err != nil {
		return "", err
	}
	m, err := newFranzMember(bootstrap, group, topic)
	if err != nil {
		return "", err
	}
	if err := pollUntil(ctx, []*franzMember{m}, func() bool { _, n := m.state(); return n >= 20 }); err != nil {
		m.cl.Close()
		return "", fmt.Errorf("consume: %w", err)
	}
	if err := m.cl.CommitMarkedOffsets(ctx); err != nil {
		m.cl.Close()
		return "", err
	}
	lgs, err := adm.ListGroups(ctx)
	if err != nil {
		m.cl.Close()
		return "", err
	}
	if _, ok := lgs[group]; !ok {
		m.cl.Close()
		return "", fmt.Errorf("ListGroups lacks %s", group)
	}
	dgs, err := adm.DescribeGroups(ctx, group)
	m.cl.Close()
	if err != nil || dgs[group].Err != nil {
		return "", fmt.Errorf("describe: %v %v", err, dgs[group].Err)
	}
	d := dgs[group]
	obs("admin_groups", "state", d.State)
	obs("admin_groups", "protocol", d.Protocol)
	if len(d.Members) != 1 || d.State != "Stable" {
		return "", fmt.Errorf("described %d members, state %s", len(d.Members), d.State)
	}
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return "", err
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != 20 {
		return "", fmt.Errorf("committed sum %d", sum)
	}
	dr, err := adm.DeleteGroups(ctx, group)
	if err != nil || dr[group].Err != nil {
		return "", fmt.Errorf("delete group: %v %v", err, dr[group].Err)
	}
	return "list/describe/fetch offsets/delete group ok", nil
}

// franzFetchEdge sends Fetch requests that name no partitions -- a sessionless full fetch
// (SessionEpoch 0) and a session-close fetch (SessionEpoch -1, what the Java consumer sends
// when it closes) -- with MaxWaitMillis 2000. Kafka answers such a fetch at once (there is
// nothing to wait for); a broker that holds it for MaxWait makes every Java consumer close
// fetch.max.wait.ms slower. Fails if either takes 1 s or more.
func franzFetchEdge(bootstrap string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := franzClient(bootstrap)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	var parts []string
	slow := false
	for _, epoch := range []int32{0, -1} {
		req := kmsg.NewPtrFetchRequest()
		req.SetVersion(12)
		req.ReplicaID = -1
		req.MaxWaitMillis = 2000
		req.MinBytes = 1
		req.MaxBytes = 1 << 20
		req.SessionEpoch = epoch
		t0 := time.Now()
		resp, err := req.RequestWith(ctx, cl)
		took := time.Since(t0)
		if err != nil {
			return "", fmt.Errorf("fetch (epoch %d): %w", epoch, err)
		}
		if e := kerr.ErrorForCode(resp.ErrorCode); e != nil {
			return "", fmt.Errorf("fetch (epoch %d): %w", epoch, e)
		}
		immediate := took < time.Second
		slow = slow || !immediate
		obs("fetch_edge", fmt.Sprintf("no_partitions_epoch_%d_immediate", epoch), immediate)
		parts = append(parts, fmt.Sprintf("epoch %d answered in %d ms", epoch, took.Milliseconds()))
	}
	detail := "Fetch v12 naming no partitions, MaxWait 2000 ms: " + strings.Join(parts, ", ")
	if slow {
		return "", errors.New(detail + " (Kafka answers at once)")
	}
	return detail, nil
}
