package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

func saramaScenarios() []scenario {
	return []scenario{
		{"produce_consume", saramaProduceConsume},
		{"admin", saramaAdmin},
		{"errors", saramaErrors},
		{"group", saramaGroup},
	}
}

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V4_1_0_0
	c.ClientID = "sluice-compat-sarama"
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 5
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Group.Session.Timeout = 10 * time.Second
	c.Consumer.Group.Heartbeat.Interval = time.Second
	c.Consumer.MaxWaitTime = 500 * time.Millisecond
	c.Admin.Timeout = 20 * time.Second
	return c
}

func saramaProduce(bootstrap, topic string, from, n, keys int) error {
	p, err := sarama.NewSyncProducer([]string{bootstrap}, saramaConfig())
	if err != nil {
		return err
	}
	defer p.Close()
	msgs := make([]*sarama.ProducerMessage, 0, n)
	for i := 0; i < n; i++ {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%keys)),
			Value: sarama.StringEncoder(fmt.Sprintf("v%d", from+i))})
	}
	return p.SendMessages(msgs)
}

func saramaCreate(adm sarama.ClusterAdmin, topic string, partitions int32) error {
	return adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1}, false)
}

func saramaProduceConsume(bootstrap string) (string, error) {
	topic := topicName("sarama", "pc")
	adm, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		return "", err
	}
	defer adm.Close()
	if err := saramaCreate(adm, topic, 3); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	const n = 300
	if err := saramaProduce(bootstrap, topic, 0, n, 10); err != nil {
		return "", fmt.Errorf("produce: %w", err)
	}
	c, err := sarama.NewConsumer([]string{bootstrap}, saramaConfig())
	if err != nil {
		return "", err
	}
	defer c.Close()
	var got []rec
	deadline := time.After(30 * time.Second)
	for p := int32(0); p < 3; p++ {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return "", fmt.Errorf("consume partition %d: %w", p, err)
		}
		hw := pc.HighWaterMarkOffset()
	loop:
		for {
			select {
			case m := <-pc.Messages():
				got = append(got, rec{string(m.Key), string(m.Value), m.Partition, m.Offset})
				if m.Offset+1 >= pc.HighWaterMarkOffset() {
					break loop
				}
			case e := <-pc.Errors():
				pc.Close()
				return "", fmt.Errorf("partition %d: %v", p, e)
			case <-deadline:
				pc.Close()
				return "", fmt.Errorf("timeout consuming partition %d (hw %d, got %d)", p, hw, len(got))
			}
		}
		pc.Close()
	}
	if err := checkProduced(got, 0, n); err != nil {
		return "", err
	}
	obs("produce_consume", "records", len(got))
	return fmt.Sprintf("%d records, order ok", n), nil
}

func saramaAdmin(bootstrap string) (string, error) {
	topic := topicName("sarama", "admin")
	adm, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		return "", err
	}
	defer adm.Close()
	if err := saramaCreate(adm, topic, 1); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	topics, err := adm.ListTopics()
	if err != nil {
		return "", err
	}
	if d, ok := topics[topic]; !ok || d.NumPartitions != 1 {
		return "", fmt.Errorf("ListTopics: %+v", topics[topic])
	}
	md, err := adm.DescribeTopics([]string{topic})
	if err != nil || len(md) != 1 || !errors.Is(md[0].Err, sarama.ErrNoError) {
		return "", fmt.Errorf("DescribeTopics: %v %+v", err, md)
	}
	entries, err := adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic})
	if err != nil {
		return "", fmt.Errorf("DescribeConfig: %w", err)
	}
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Name)
	}
	sort.Strings(keys)
	obs("admin", "topic_config_keys", strings.Join(keys, ","))
	v := "3600000"
	if err := adm.IncrementalAlterConfig(sarama.TopicResource, topic,
		map[string]sarama.IncrementalAlterConfigsEntry{"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: &v}}, false); err != nil {
		return "", fmt.Errorf("IncrementalAlterConfig: %w", err)
	}
	// Kafka (KRaft) applies config changes asynchronously: re-read for a few seconds.
	waitFor(5*time.Second, func() bool {
		entries, err = adm.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"retention.ms"}})
		return err == nil && len(entries) == 1 && entries[0].Value == v
	})
	if err != nil || len(entries) != 1 || entries[0].Value != v {
		return "", fmt.Errorf("retention.ms after alter: %v %+v", err, entries)
	}
	if err := adm.CreatePartitions(topic, 3, nil, false); err != nil {
		return "", fmt.Errorf("CreatePartitions: %w", err)
	}
	brokers, controller, err := adm.DescribeCluster()
	if err != nil || len(brokers) < 1 || controller < 0 {
		return "", fmt.Errorf("DescribeCluster: %v %d brokers, controller %d", err, len(brokers), controller)
	}
	if err := adm.DeleteTopic(topic); err != nil {
		return "", fmt.Errorf("DeleteTopic: %w", err)
	}
	return fmt.Sprintf("create/list/describe/configs(%d keys)/alter/partitions/cluster/delete ok", len(keys)), nil
}

func saramaErrName(err error) string {
	if err == nil {
		return "none"
	}
	var ke sarama.KError
	if errors.As(err, &ke) {
		return fmt.Sprintf("%d", int16(ke))
	}
	var te *sarama.TopicError
	if errors.As(err, &te) {
		return fmt.Sprintf("%d", int16(te.Err))
	}
	var pe *sarama.TopicPartitionError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%d", int16(pe.Err))
	}
	return "other:" + err.Error()
}

func saramaErrors(bootstrap string) (string, error) {
	topic := topicName("sarama", "err")
	adm, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		return "", err
	}
	defer adm.Close()
	if err := saramaCreate(adm, topic, 2); err != nil {
		return "", err
	}
	seen := map[string]string{
		"create_existing":     saramaErrName(saramaCreate(adm, topic, 1)),
		"create_invalid_name": saramaErrName(saramaCreate(adm, "bad/name", 1)),
		"partitions_decrease": saramaErrName(adm.CreatePartitions(topic, 1, nil, false)),
		"delete_unknown":      saramaErrName(adm.DeleteTopic(topicName("sarama", "nosuch"))),
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		obs("errors", k, seen[k])
	}
	want := map[string]string{"create_existing": "36", "create_invalid_name": "17", "partitions_decrease": "37", "delete_unknown": "3"}
	for k, w := range want {
		if seen[k] != w {
			return "", fmt.Errorf("%s: error code %s, want %s", k, seen[k], w)
		}
	}
	_ = adm.DeleteTopic(topic)
	return fmt.Sprintf("%d error cases as expected", len(seen)), nil
}

// saramaHandler records what one group member consumed and commits after each message.
type saramaHandler struct {
	mu       sync.Mutex
	claims   int
	got      []rec
	consumed func()
}

func (h *saramaHandler) Setup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	for _, ps := range s.Claims() {
		h.claims += len(ps)
	}
	h.mu.Unlock()
	return nil
}

func (h *saramaHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	h.claims = 0
	h.mu.Unlock()
	s.Commit()
	return nil
}

func (h *saramaHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				return nil
			}
			h.mu.Lock()
			h.got = append(h.got, rec{string(m.Key), string(m.Value), m.Partition, m.Offset})
			h.mu.Unlock()
			s.MarkMessage(m, "")
		case <-s.Context().Done():
			return nil
		}
	}
}

func (h *saramaHandler) snapshot() (int, []rec) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.claims, append([]rec(nil), h.got...)
}

type saramaMember struct {
	g      sarama.ConsumerGroup
	h      *saramaHandler
	cancel context.CancelFunc
	done   chan struct{}
}

func startSaramaMember(bootstrap, group, topic string) (*saramaMember, error) {
	g, err := sarama.NewConsumerGroup([]string{bootstrap}, group, saramaConfig())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &saramaMember{g: g, h: &saramaHandler{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, m.h); err != nil && ctx.Err() == nil {
				fmt.Printf("# sarama member: %v\n", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	return m, nil
}

func (m *saramaMember) stop() {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
	}
	_ = m.g.Close()
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}

func saramaGroup(bootstrap string) (string, error) {
	topic := topicName("sarama", "grp")
	group := "sarama-group-" + runID
	adm, err := sarama.NewClusterAdmin([]string{bootstrap}, saramaConfig())
	if err != nil {
		return "", err
	}
	defer adm.Close()
	if err := saramaCreate(adm, topic, 4); err != nil {
		return "", err
	}
	run := func(from, beforeJoin, afterJoin int) (int, error) {
		if beforeJoin > 0 {
			if err := saramaProduce(bootstrap, topic, from, beforeJoin, 16); err != nil {
				return 0, err
			}
		}
		var ms []*saramaMember
		for i := 0; i < 2; i++ {
			m, err := startSaramaMember(bootstrap, group, topic)
			if err != nil {
				return 0, err
			}
			defer m.stop()
			ms = append(ms, m)
		}
		if !waitFor(30*time.Second, func() bool {
			a0, _ := ms[0].h.snapshot()
			a1, _ := ms[1].h.snapshot()
			return a0 == 2 && a1 == 2
		}) {
			return 0, errors.New("group never balanced 2/2")
		}
		if err := saramaProduce(bootstrap, topic, from+beforeJoin, afterJoin, 16); err != nil {
			return 0, err
		}
		n := beforeJoin + afterJoin
		all := func() []rec {
			_, a := ms[0].h.snapshot()
			_, b := ms[1].h.snapshot()
			return append(a, b...)
		}
		distinct := func() int {
			seen := map[string]bool{}
			for _, r := range all() {
				seen[r.value] = true
			}
			return len(seen)
		}
		if !waitFor(30*time.Second, func() bool { return distinct() >= n }) {
			return 0, fmt.Errorf("consumed %d distinct of %d", distinct(), n)
		}
		time.Sleep(500 * time.Millisecond)
		for _, m := range ms {
			m.stop()
		}
		rs := all()
		for _, r := range rs {
			if seqOf(r.value) < from {
				return 0, fmt.Errorf("re-consumed committed record %s", r.value)
			}
		}
		if distinct() != n {
			return 0, fmt.Errorf("consumed %d distinct, want %d", distinct(), n)
		}
		if beforeJoin == 0 {
			if err := checkProduced(rs, from, n); err != nil {
				return 0, err
			}
		}
		return len(rs) - n, nil
	}
	if _, err := run(0, 0, 200); err != nil {
		return "", fmt.Errorf("first generation: %w", err)
	}
	offs, err := adm.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0, 1, 2, 3}})
	if err != nil {
		return "", err
	}
	var sum int64
	for _, b := range offs.Blocks[topic] {
		sum += b.Offset
	}
	if sum != 200 {
		return "", fmt.Errorf("committed offsets sum %d, want 200", sum)
	}
	dupes, err := run(200, 50, 50)
	if err != nil {
		return "", fmt.Errorf("after restart: %w", err)
	}
	gs, err := adm.ListConsumerGroups()
	if err != nil {
		return "", err
	}
	if _, ok := gs[group]; !ok {
		return "", fmt.Errorf("ListConsumerGroups lacks %s", group)
	}
	return fmt.Sprintf("2 members x 2 partitions, 200 exactly once + committed; restart resumed with the 100 new (%d redelivered)", dupes), nil
}
